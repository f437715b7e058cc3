"""A bundle's network must give probabilities and its calibration a sane temperature;
anything else is refused naming the model, never counted as a class or "unsure"."""

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from foramflow.bundle import Bundle, BundleError, BundleMeta, write_bundle
from foramflow.bundle.engine import Engine
from foramflow.classify.runner import classify_folder
from foramflow.imaging.preprocess import PreprocessSpec

LABELS = ["dark", "bright"]


def constant_model(row, *, softmax: bool = False) -> bytes:
    """A network that answers ``row`` for every image (through a softmax if asked)."""
    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["mean"], axis=1),
        helper.make_node("MatMul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "row"], ["out" if not softmax else "logits"]),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["out"], axis=1))
    graph = helper.make_graph(
        nodes,
        "constant",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 1, 16, 16])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 2])],
        initializer=[
            numpy_helper.from_array(np.zeros((1, 2), np.float32), "zero"),
            numpy_helper.from_array(np.asarray(row, np.float32), "row"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def bundle_answering(path, row, *, softmax=False, **meta):
    description = BundleMeta(
        labels=LABELS, preprocessing=PreprocessSpec(size=16, channels=1), threshold=0.8, **meta
    )
    return write_bundle(path, description, constant_model(row, softmax=softmax))


BATCH = np.full((3, 1, 16, 16), 0.5, np.float32)


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ([np.nan, 0.5], "not finite"),
        ([np.inf, 0.0], "not finite"),
        ([-np.inf, 1.0], "not finite"),
        ([-0.5, 1.5], "negative"),
        ([2.3, -1.1], "negative"),  # raw logits
        ([2.3, 1.1], "do not sum to 1"),  # raw scores
        ([0.3, 0.3], "do not sum to 1"),
    ],
)
def test_outputs_that_are_not_probabilities_are_refused_naming_the_model(tmp_path, row, problem):
    bundle = Bundle.load(bundle_answering(tmp_path / "b", row))
    with pytest.raises(BundleError) as caught:
        Engine(bundle, precision="fp32").predict(BATCH)
    message = str(caught.value)
    assert message.startswith(str(tmp_path / "b" / "model.onnx"))
    assert problem in message and "3 of 3 images" in message


def test_probabilities_pass(tmp_path):
    bundle = Bundle.load(bundle_answering(tmp_path / "b", [3.0, 1.0], softmax=True))
    probs = Engine(bundle, precision="fp32").predict(BATCH)
    assert probs.sum(axis=1) == pytest.approx(np.ones(3), abs=1e-6)


def test_classify_stops_at_nan_outputs_instead_of_counting_them_unsure(tmp_path):
    bundle = bundle_answering(tmp_path / "b", [np.nan, np.nan])
    images = tmp_path / "images" / "S1"
    images.mkdir(parents=True)
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(images / "a.png")
    with pytest.raises(BundleError, match="not probabilities: values that are not finite"):
        classify_folder(bundle, tmp_path / "images", tmp_path / "out", workers=0)


@pytest.mark.parametrize("temperature", [0, 0.01, -1, 25.0, "NaN", "Infinity"])
def test_a_temperature_outside_the_sane_range_is_refused_at_load(tmp_path, temperature):
    path = bundle_answering(tmp_path / "b", [3.0, 1.0], softmax=True)
    meta = json.loads((path / "model.json").read_text())
    meta["calibration"] = {"temperature": temperature}
    text = json.dumps(meta)
    if isinstance(temperature, str):  # what Python's json writes for nan and inf
        text = text.replace(f'"{temperature}"', temperature)
    (path / "model.json").write_text(text)
    with pytest.raises(
        BundleError, match=r"model\.json: calibration\.temperature: .*\[0\.05, 20\]"
    ):
        Bundle.load(path)


@pytest.mark.parametrize("labels", [["CON", "b"], ["a", "Unsure"], ["a", "a\u202eb"], ["G", "g"]])
def test_a_bundle_whose_labels_break_the_class_name_rule_is_refused(tmp_path, labels):
    path = bundle_answering(tmp_path / "b", [3.0, 1.0], softmax=True)
    meta = json.loads((path / "model.json").read_text())
    meta["labels"] = labels
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"model\.json: class name"):
        Bundle.load(path)
