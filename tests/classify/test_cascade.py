"""The cascade in the engine and in classify: the one view answers where it is sure, the
full network elsewhere, each with its own temperature; a cascade that no longer describes
its files is refused."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from foramflow.bundle import Bundle, BundleError
from foramflow.bundle.engine import Engine, apply_temperature
from foramflow.bundle.quantize import quantize_network
from foramflow.classify.runner import classify_folder

ONE_VIEW_STEEPNESS = 1.0


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def cascade_bundle(bundle, kit):
    """The brightness bundle with a far less sure one-view network: on dark and bright
    images its two classes lie about 0.4 apart, on mid grey about 0."""
    one_view = kit.brightness_model(steepness=ONE_VIEW_STEEPNESS).SerializeToString()
    (bundle / "model.one_view.onnx").write_bytes(one_view)
    meta = json.loads((bundle / "model.json").read_text())
    meta["cascade"] = {
        "margin": 0.2,
        "one_view_temperature": 2.0,
        "validation_images": 500,
        "rechecked_share": 0.1,
        "top1": 0.9,
        "full_top1": 0.9,
        "one_view_top1": 0.8,
        "model_sha256": sha((bundle / "model.onnx").read_bytes()),
        "file_sha256": sha(one_view),
    }
    (bundle / "model.json").write_text(json.dumps(meta))
    return bundle


def grey(*levels: int) -> np.ndarray:
    return np.stack([np.full((1, 16, 16), v / 255, np.float32) for v in levels])


def test_sure_images_keep_the_one_views_answer_unsure_ones_get_the_full_networks(
    cascade_bundle, kit
):
    bundle = Bundle.load(cascade_bundle)
    cascade = Engine(bundle, precision="cascade", threads=1)
    full = Engine(bundle, precision="fp32", threads=1)
    batch = grey(kit.dark, kit.mid, kit.bright)
    probs = cascade.predict(batch)
    p = kit.p_bright
    one_view_dark = 1 / (1 + np.exp(-ONE_VIEW_STEEPNESS * (2 * kit.dark / 255 - 1)))
    expected_dark = apply_temperature(np.array([[1 - one_view_dark, one_view_dark]]), 2.0)
    np.testing.assert_allclose(probs[0], expected_dark[0], atol=1e-5)
    np.testing.assert_allclose(probs[1], full.predict(batch[1:2])[0], atol=1e-6)
    assert probs[2].argmax() == 1 and abs(probs[2, 1] - p(kit.bright)) > 0.1  # the one view's
    assert cascade.n_rechecked == 1
    assert "one view first" in cascade.describe()


def test_a_changed_one_view_file_is_refused(cascade_bundle, kit):
    other = kit.brightness_model(steepness=3.0).SerializeToString()
    (cascade_bundle / "model.one_view.onnx").write_bytes(other)
    with pytest.raises(BundleError, match="not the file its cascade was chosen for"):
        Engine(Bundle.load(cascade_bundle), precision="cascade", threads=1)


def test_a_bundle_without_a_cascade_cannot_run_one(bundle):
    with pytest.raises(BundleError, match="holds no cascade"):
        Engine(Bundle.load(bundle), precision="cascade", threads=1)


def test_auto_takes_the_cascade_where_it_is_timed_faster(cascade_bundle, tree, tmp_path):
    result = classify_folder(cascade_bundle, tree, tmp_path / "out", workers=0)
    assert result.run.precision == "cascade"
    tried = {trial["precision"] for trial in result.run.setup["trials"]}
    assert tried == {"cascade", "fp32"}


def test_auto_on_a_bundle_without_a_cascade_never_tries_one(bundle, tree, tmp_path):
    result = classify_folder(bundle, tree, tmp_path / "out", workers=0)
    assert result.run.precision == "fp32"
    assert "cascade" not in {trial["precision"] for trial in result.run.setup["trials"]}


def test_a_cascade_runs_the_int8_copies_it_was_chosen_with(cascade_bundle, kit):
    """Each stage runs the file its record names, and a changed int8 copy is refused."""
    calibration = grey(*range(0, 256, 8))
    for source, copy in (("model.one_view.onnx", "model.one_view.int8.onnx"),
                         ("model.onnx", "model.int8.onnx")):  # fmt: skip
        quantize_network((cascade_bundle / source).read_bytes(), calibration, cascade_bundle / copy)
    meta = json.loads((cascade_bundle / "model.json").read_text())
    meta["cascade"] |= {
        "one_view_file": "model.one_view.int8.onnx",
        "file_sha256": sha((cascade_bundle / "model.one_view.int8.onnx").read_bytes()),
        "full_file": "model.int8.onnx",
        "full_file_sha256": sha((cascade_bundle / "model.int8.onnx").read_bytes()),
    }
    (cascade_bundle / "model.json").write_text(json.dumps(meta))
    engine = Engine(Bundle.load(cascade_bundle), precision="cascade", threads=1)
    assert "int8 one view first and int8 every view" in engine.describe()
    batch = grey(kit.dark, kit.mid, kit.bright)
    fp32 = Engine(Bundle.load(cascade_bundle), precision="fp32", threads=1).predict(batch)
    probs = engine.predict(batch)
    assert engine.n_rechecked == 1  # mid grey
    np.testing.assert_array_equal(probs.argmax(1), fp32.argmax(1))
    (cascade_bundle / "model.int8.onnx").write_bytes(
        (cascade_bundle / "model.one_view.int8.onnx").read_bytes()
    )
    with pytest.raises(BundleError, match=r"model\.int8\.onnx is not the file its cascade"):
        Engine(Bundle.load(cascade_bundle), precision="cascade", threads=1)


@pytest.mark.parametrize("field", ["one_view_file", "full_file"])
def test_a_cascade_record_naming_a_file_outside_the_bundle_is_refused(cascade_bundle, field):
    meta = json.loads((cascade_bundle / "model.json").read_text())
    meta["cascade"][field] = "../elsewhere.onnx"
    (cascade_bundle / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"model\.json.*elsewhere\.onnx"):
        Bundle.load(cascade_bundle)
