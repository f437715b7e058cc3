import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from foramflow.bundle import Bundle, BundleError, quantize, update_bundle_meta
from foramflow.bundle.engine import (
    Engine,
    close_calls,
    recheck_margin,
    resolve_precision,
)
from foramflow.bundle.quantize import quantize_bundle
from foramflow.classify.runner import classify_folder
from foramflow.progress import Recorded

pytestmark = pytest.mark.usefixtures("small_checks_suffice")


def test_engine_applies_the_bundle_temperature(kit, tmp_path):
    plain = Engine(Bundle.load(kit.write_bundle(tmp_path / "a")))
    warm = Engine(Bundle.load(kit.write_bundle(tmp_path / "b", calibration={"temperature": 2.0})))
    batch = np.full((1, 1, 16, 16), 150 / 255, dtype=np.float32)
    p = plain.predict(batch)[0, 1]
    logit = np.log(p / (1 - p))  # softmax(log p / T) of two classes is a sigmoid of logit / T
    assert warm.predict(batch)[0, 1] == pytest.approx(1 / (1 + np.exp(-logit / 2)), rel=1e-5)


def test_int8_copy_made_from_unlabelled_images_runs_when_asked_never_under_auto(
    kit, bundle, tree, tmp_path
):
    with pytest.raises(BundleError, match="no int8 model"):
        resolve_precision(Bundle.load(bundle), "int8")
    images = sorted(tree.rglob("*.png"))
    record = quantize_bundle(bundle, images)
    meta = json.loads((bundle / "model.json").read_text())
    assert meta["int8"] == record
    assert (bundle / record["file"]).is_file()
    assert record["calibration_images"] + record["check_images"] == len(images)
    assert record["top1_agreement"] == 1.0
    # agreeing on images without labels is no validation top-1: "auto" stays in fp32
    assert resolve_precision(Bundle.load(bundle), "auto") == ("fp32", "model.onnx")

    result = classify_folder(bundle, tree, tmp_path / "out", workers=0, precision="int8")
    assert result.run.precision == "int8"
    counts = result.counts[[*kit.labels, "unsure"]]
    expected = pd.DataFrame(kit.expected_counts, index=[*kit.labels, "unsure", "error"]).T
    pd.testing.assert_frame_equal(counts, expected[counts.columns], check_names=False)


@pytest.mark.parametrize("exact", [True, False])
def test_int8_weights_keep_to_seven_bits_where_the_cpu_would_overflow_eight(
    kit, tree, tmp_path, monkeypatch, exact
):
    import onnx
    from onnx import numpy_helper

    monkeypatch.setattr(quantize, "int8_exact", lambda: exact)
    bundle = kit.write_bundle(tmp_path / "bundle", conv=True)
    record = quantize_bundle(bundle, sorted(tree.rglob("*.png")))
    assert record["top1_agreement"] == 1.0 and record["weight_bits"] == (8 if exact else 7)
    model = onnx.load(bundle / "model.int8.onnx")
    weights = [
        numpy_helper.to_array(t)
        for t in model.graph.initializer
        if t.data_type == onnx.TensorProto.INT8
    ]
    assert weights, "the int8 copy quantises no weights"
    # the second convolution's one weight is its largest: 127 with 8 bits, 64 with 7
    assert max(int(np.abs(w.astype(int)).max()) for w in weights) == (127 if exact else 64)
    # the stem, which reads the image, stays in fp32: the image and its weights as they are
    (stem,) = [n for n in model.graph.node if n.op_type == "Conv" and n.output == ["stem"]]
    assert list(stem.input) == ["image", "stem_weight"]


def test_classify_asks_for_int8_quantises_on_its_own_images(bundle, tree, tmp_path):
    progress = Recorded()
    messages = progress.messages
    result = classify_folder(
        bundle, tree, tmp_path / "out", precision="int8", workers=0, progress=progress
    )
    assert result.run.model_file == "model.int8.onnx"
    assert any("top-1 agreement with fp32 100.00%" in m for m in messages)


def test_zipped_bundle_classifies_like_the_folder(kit, bundle, tree, tmp_path):
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in bundle.iterdir():
            zipped.write(path, f"bundle/{path.name}")
    result = classify_folder(archive, tree, tmp_path / "out", workers=0)
    reference = classify_folder(bundle, tree, tmp_path / "ref", workers=0)
    pd.testing.assert_frame_equal(result.counts, reference.counts)
    assert result.run.bundle_hash == reference.run.bundle_hash
    with pytest.raises(BundleError, match="bundle folder"):
        quantize_bundle(archive, sorted(tree.rglob("*.png")))


@pytest.mark.parametrize(
    ("images", "loss", "expected"),
    [(200, 0.002, "int8"), (200, 0.004, "fp32"), (199, 0.0, "fp32")],
    ids=["kept", "lost-too-much", "too-few-images"],
)
def test_auto_takes_int8_only_where_it_kept_the_validation_top1(
    bundle, tree, images, loss, expected
):
    record = quantize_bundle(bundle, sorted(tree.rglob("*.png")))
    checked = {"validation_images": images, "fp32_validation_top1": 0.8}
    update_bundle_meta(bundle, int8={**record, **checked, "validation_top1": 0.8 - loss})
    assert resolve_precision(Bundle.load(bundle), "auto")[0] == expected
    assert resolve_precision(Bundle.load(bundle), "int8") == ("int8", "model.int8.onnx")


def test_int8_asked_for_again_warns_again_and_says_auto_does_not_use_it(bundle, tree, tmp_path):
    record = quantize_bundle(bundle, sorted(tree.rglob("*.png")))
    update_bundle_meta(bundle, int8={**record, "top1_agreement": 0.40})
    progress = Recorded()
    messages = progress.messages
    classify_folder(bundle, tree, tmp_path / "out", precision="int8", workers=0, progress=progress)
    assert any("int8: top-1 agreement with fp32 40.00%" in m for m in messages)
    assert any(m.startswith("warning: below 99.5%: int8 results differ") for m in messages)
    assert any("auto uses only an int8 copy checked on the validation split" in m for m in messages)


def test_int8_model_made_by_an_older_method_is_made_again_when_asked_for(kit, tree, tmp_path):
    from foramflow.bundle.int8_exact import int8_exact
    from foramflow.bundle.quantize import method

    bundle = kit.write_bundle(tmp_path / "bundle", conv=True)
    record = quantize_bundle(bundle, sorted(tree.rglob("*.png")))
    update_bundle_meta(bundle, int8={**record, "method": "full-range int8 weights"})
    progress = Recorded()
    messages = progress.messages
    classify_folder(bundle, tree, tmp_path / "out", precision="int8", workers=0, progress=progress)
    assert any("made another way (full-range int8 weights)" in m for m in messages)
    made = json.loads((bundle / "model.json").read_text())["int8"]
    assert made["method"] == method(made["weight_bits"])
    assert made["weight_bits"] == (8 if int8_exact() else 7)


def test_bf16_agreement_is_measured_once_and_used_by_auto(kit, bundle, tree, tmp_path):
    progress = Recorded()
    messages = progress.messages
    result = classify_folder(
        bundle, tree, tmp_path / "bf16", precision="bf16", workers=0, progress=progress
    )
    assert result.run.precision == "bf16"
    record = json.loads((bundle / "model.json").read_text())["bf16"]
    assert record["check_images"] == len(list(tree.rglob("*.png")))
    assert record["top1_agreement"] == 1.0  # dark and bright are never close calls
    assert 0 <= record["max_probability_change"] < 0.05
    assert any("bf16: top-1 agreement with fp32 100.00%" in m for m in messages)
    assert record["rechecked_agreement"] == 1.0 and record["recheck_share"] == 0.0
    fp32 = classify_folder(bundle, tree, tmp_path / "fp32", precision="fp32", workers=0)
    pd.testing.assert_frame_equal(result.counts, fp32.counts)


def test_auto_takes_bf16_only_on_a_bf16_cpu_and_when_faithful(
    bundle, cpu_without_bf16, network_hash
):
    update_bundle_meta(
        bundle,
        bf16={"model_sha256": network_hash(bundle), "check_images": 512, "top1_agreement": 0.999},
    )
    assert resolve_precision(Bundle.load(bundle), "auto") == ("fp32", "model.onnx")
    cpu_without_bf16(True)
    assert resolve_precision(Bundle.load(bundle), "auto") == ("bf16", "model.onnx")
    update_bundle_meta(
        bundle,
        bf16={"model_sha256": network_hash(bundle), "check_images": 512, "top1_agreement": 0.99},
    )
    assert resolve_precision(Bundle.load(bundle), "auto") == ("fp32", "model.onnx")


def test_auto_judges_bf16_by_its_results_with_close_calls_recomputed(
    bundle, cpu_without_bf16, network_hash
):
    cpu_without_bf16(True)
    check = {
        "model_sha256": network_hash(bundle),
        "check_images": 512,
        "top1_agreement": 0.98,
        "max_probability_change": 0.1,
    }
    update_bundle_meta(bundle, bf16={**check, "rechecked_agreement": 1.0})
    assert resolve_precision(Bundle.load(bundle), "auto") == ("bf16", "model.onnx")
    update_bundle_meta(bundle, bf16={**check, "rechecked_agreement": 0.99})
    assert resolve_precision(Bundle.load(bundle), "auto") == ("fp32", "model.onnx")


def test_auto_declines_bf16_that_would_recompute_many_images_in_fp32(
    bundle, cpu_without_bf16, network_hash
):
    cpu_without_bf16(True)
    check = {
        "model_sha256": network_hash(bundle),
        "check_images": 512,
        "top1_agreement": 0.98,
        "rechecked_agreement": 1.0,
    }
    update_bundle_meta(bundle, bf16={**check, "recheck_share": 0.15})
    assert resolve_precision(Bundle.load(bundle), "auto") == ("bf16", "model.onnx")
    update_bundle_meta(bundle, bf16={**check, "recheck_share": 0.31})
    assert resolve_precision(Bundle.load(bundle), "auto") == ("fp32", "model.onnx")
    assert resolve_precision(Bundle.load(bundle), "bf16") == ("bf16", "model.onnx")  # asked for


def test_a_bf16_record_without_rechecked_agreement_is_measured_again(
    bundle, tree, tmp_path, cpu_without_bf16, network_hash
):
    cpu_without_bf16(True)
    update_bundle_meta(
        bundle,
        bf16={"model_sha256": network_hash(bundle), "check_images": 512, "top1_agreement": 0.98},
    )
    result = classify_folder(bundle, tree, tmp_path / "out", workers=0)
    record = json.loads((bundle / "model.json").read_text())["bf16"]
    assert record["check_images"] == len(list(tree.rglob("*.png")))
    assert record["rechecked_agreement"] == 1.0
    assert result.run.precision == "bf16"


def test_auto_on_a_bf16_cpu_checks_the_bundle_first(bundle, tree, tmp_path, cpu_without_bf16):
    cpu_without_bf16(True)
    result = classify_folder(bundle, tree, tmp_path / "out", workers=0)
    assert result.run.precision == "bf16"
    assert json.loads((bundle / "model.json").read_text())["bf16"]["top1_agreement"] == 1.0


def test_close_calls_are_near_ties_and_scores_near_their_class_cut():
    probs = np.array(
        [[0.50, 0.49, 0.01], [0.90, 0.05, 0.05], [0.30, 0.33, 0.37], [0.10, 0.12, 0.78]],
        dtype=np.float32,
    )
    assert close_calls(probs, 0.05).tolist() == [0, 2]  # top two 0.01 and 0.04 apart
    assert close_calls(probs, 0.0).tolist() == []
    # class 2's cut 0.8 is 0.02 from row 3's score; class 0's cut 0 switches the rule off
    cuts = np.float32([0.0, 0.8, 0.8])
    assert close_calls(probs, 0.05, cuts).tolist() == [0, 2, 3]
    assert close_calls(probs, 0.05, np.float32([0.88, 0.8, 0.5])).tolist() == [0, 1, 2]


def test_a_bf16_engine_recomputes_close_calls_and_scores_near_the_cut(bundle):
    engine = Engine(Bundle.load(bundle), precision="fp32", cuts=np.float32([0.8, 0.8]))
    approx = np.float32([[0.50, 0.50], [0.95, 0.05], [0.21, 0.79], [0.35, 0.65]])
    batch = np.arange(4, dtype=np.float32).reshape(4, 1, 1, 1)  # row i holds the value i
    seen = []

    def exact(rows):
        seen.append(rows[:, 0, 0, 0].tolist())
        return np.tile(np.float32([0.1, 0.9]), (len(rows), 1))

    engine._run, engine._exact, engine.margin = (lambda b: approx), exact, 0.05
    out = engine.predict(batch)
    assert seen == [[0.0, 2.0]] and engine.n_rechecked == 2  # a tie; 0.79 near the cut 0.8
    np.testing.assert_array_equal(out[[0, 2]], np.float32([[0.1, 0.9], [0.1, 0.9]]))
    np.testing.assert_array_equal(out[[1, 3]], approx[[1, 3]])


def test_recheck_margin_is_twice_the_largest_change_seen(bundle):
    assert recheck_margin(Bundle.load(bundle)) == 0.0  # no bf16 check yet
    update_bundle_meta(bundle, bf16={"top1_agreement": 0.999, "max_probability_change": 0.03})
    assert recheck_margin(Bundle.load(bundle)) == pytest.approx(0.06)
