"""A broken bundle is refused with one line that names it and says what is wrong."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from typer.testing import CliRunner

from foramflow.bundle import Bundle, BundleError
from foramflow.cli import app
from foramflow.errors import ForamflowError
from foramflow.imaging.preprocess import PreprocessSpec

LABELS = ["dark", "bright"]


def network(n_outputs: int = 2, size: int = 16) -> onnx.ModelProto:
    """Mean brightness → ``n_outputs`` softmax probabilities."""
    weights = np.linspace(-1, 1, n_outputs, dtype=np.float32)[None, :]
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["mean"], axis=1),
            helper.make_node("MatMul", ["mean", "weights"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        ],
        "brightness",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 1, size, size])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", n_outputs])],
        initializer=[numpy_helper.from_array(weights, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def description(**changes) -> dict:
    meta = {
        "format": "foramflow-bundle/1",
        "labels": LABELS,
        "input": {"shape": ["batch", 1, 16, 16], "size": 16, "channels": 1},
        "preprocessing": PreprocessSpec(size=16, channels=1).to_dict(),
        "threshold": 0.8,
    }
    meta.update(changes)
    return {key: value for key, value in meta.items() if value is not None}


def write_bundle(path: Path, *, model: onnx.ModelProto | None = None, **changes) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    onnx.save(model or network(), str(path / "model.onnx"))
    (path / "model.json").write_text(json.dumps(description(**changes)))
    return path


@pytest.fixture
def bundle(tmp_path) -> Path:
    return write_bundle(tmp_path / "bundle")


@pytest.fixture
def images(tmp_path) -> Path:
    """A labelled folder (one per class) of two tiny images each."""
    root = tmp_path / "images"
    for label, level in (("dark", 20), ("bright", 235)):
        (root / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((10, 12), level, np.uint8)).save(root / label / f"{i}.png")
    return root


def truncate(bundle: Path) -> None:
    model = bundle / "model.onnx"
    model.write_bytes(model.read_bytes()[:40])


def test_bundle_error_is_a_foramflow_error():
    assert issubclass(BundleError, ForamflowError)
    assert issubclass(BundleError, ValueError)  # callers that catch ValueError still do


@pytest.mark.parametrize("missing", ["labels", "preprocessing"])
def test_model_json_without_labels_or_preprocessing_is_refused(tmp_path, missing):
    bundle = write_bundle(tmp_path / "b", **{missing: None})
    with pytest.raises(BundleError, match=f"model.json.*no '{missing}'"):
        Bundle.load(bundle)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"labels": "dark,bright"}, "labels must be a list of class names"),
        ({"labels": ["dark", "dark"]}, "'dark' is listed twice"),
        ({"labels": ["dark", ""]}, "labels must be a list of class names"),
        ({"preprocessing": {"name": "other", "params": {}}}, "preprocessing"),
        ({"preprocessing": {"name": PreprocessSpec(size=16).to_dict()["name"]}}, "preprocessing"),
        ({"threshold": "high"}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        (
            {"input": {"size": 32, "channels": 1}},
            "input is 32 × 32 px, 1 channel but the preprocessing",
        ),
    ],
)
def test_invalid_model_json_fields_are_refused(tmp_path, changes, problem):
    bundle = write_bundle(tmp_path / "b", **changes)
    with pytest.raises(BundleError, match=problem) as caught:
        Bundle.load(bundle)
    assert str(bundle / "model.json") in str(caught.value)


def test_model_json_without_threshold_uses_the_default_and_says_so(tmp_path):
    loaded = Bundle.load(write_bundle(tmp_path / "b", threshold=None))
    assert loaded.threshold == 0.8
    assert loaded.notes == ["model.json has no threshold: using 0.8"]


def test_model_json_without_input_takes_it_from_the_preprocessing(tmp_path):
    loaded = Bundle.load(write_bundle(tmp_path / "b", input=None))
    assert loaded.notes == [
        "model.json has no input: taking 16 × 16 px, 1 channel from the preprocessing"
    ]
    assert loaded.predict_batch(np.zeros((1, 1, 16, 16), np.float32)).shape == (1, 2)


def test_truncated_model_onnx_is_a_bundle_error_naming_the_file(bundle):
    truncate(bundle)
    loaded = Bundle.load(bundle)
    with pytest.raises(BundleError, match="cannot load the network") as caught:
        loaded.engine()
    assert str(bundle / "model.onnx") in str(caught.value)


def test_labels_count_not_matching_the_network_outputs_is_refused(tmp_path):
    bundle = write_bundle(tmp_path / "b", model=network(n_outputs=3))
    with pytest.raises(BundleError, match="2 labels but the network has 3 outputs"):
        Bundle.load(bundle).engine()


def test_network_input_not_matching_the_preprocessing_is_refused(tmp_path):
    bundle = write_bundle(tmp_path / "b", model=network(size=32))
    with pytest.raises(BundleError, match="network expects 32 × 32 px, 1 channel"):
        Bundle.load(bundle).engine()


def one_line_error(result, *expected: str) -> None:
    """The command failed with exit code 2 and one error line holding each expected part."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # not a traceback
    text = " ".join(result.output.split())
    assert text.startswith("error: ") and text.count("error: ") == 1
    for part in expected:
        assert part in text


@pytest.fixture
def corrupt_bundle(bundle) -> Path:
    truncate(bundle)
    return bundle


def test_classify_with_a_corrupt_model_prints_one_line(corrupt_bundle, images, tmp_path):
    result = CliRunner().invoke(
        app, ["classify", str(corrupt_bundle), str(images), "--out", str(tmp_path / "out")]
    )
    one_line_error(result, str(corrupt_bundle / "model.onnx"), "cannot load the network")
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_predict_with_a_corrupt_model_prints_one_line(corrupt_bundle, images):
    result = CliRunner().invoke(app, ["predict", str(corrupt_bundle), str(images / "dark/0.png")])
    one_line_error(result, str(corrupt_bundle / "model.onnx"), "cannot load the network")


def test_evaluate_with_a_corrupt_model_prints_one_line(corrupt_bundle, images, tmp_path):
    result = CliRunner().invoke(
        app, ["evaluate", str(corrupt_bundle), str(images), "--out", str(tmp_path / "eval")]
    )
    one_line_error(result, str(corrupt_bundle / "model.onnx"), "cannot load the network")


@pytest.mark.parametrize("command", ["classify", "predict", "evaluate"])
def test_commands_refuse_a_labels_count_mismatch_in_one_line(tmp_path, images, command):
    bundle = write_bundle(tmp_path / "b", model=network(n_outputs=3))
    arguments = {
        "classify": [str(images), "--out", str(tmp_path / "out")],
        "predict": [str(images / "dark" / "0.png")],
        "evaluate": [str(images), "--out", str(tmp_path / "eval")],
    }[command]
    result = CliRunner().invoke(app, [command, str(bundle), *arguments])
    one_line_error(result, str(bundle), "2 labels but the network has 3 outputs")


@pytest.mark.parametrize("command", ["classify", "predict", "evaluate"])
def test_commands_refuse_model_json_without_labels_in_one_line(tmp_path, images, command):
    bundle = write_bundle(tmp_path / "b", labels=None)
    arguments = {
        "classify": [str(images), "--out", str(tmp_path / "out")],
        "predict": [str(images / "dark" / "0.png")],
        "evaluate": [str(images), "--out", str(tmp_path / "eval")],
    }[command]
    result = CliRunner().invoke(app, [command, str(bundle), *arguments])
    one_line_error(result, str(bundle / "model.json"), "no 'labels'")


def test_zipped_bundle_with_a_corrupt_model_names_the_zip(bundle, tmp_path):
    import zipfile

    truncate(bundle)
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in bundle.iterdir():
            zipped.write(path, path.name)
    with pytest.raises(BundleError, match="cannot load the network") as caught:
        Bundle.load(archive).engine()
    assert str(archive) in str(caught.value)


def test_predict_reports_a_folder_named_like_an_image_and_goes_on(bundle, images, tmp_path):
    folder = tmp_path / "x.jpg"
    folder.mkdir()
    image = images / "dark" / "0.png"
    result = CliRunner().invoke(app, ["predict", str(bundle), str(folder), str(image)])
    assert result.exit_code == 1  # one input could not be read
    lines = [line.split("\t") for line in result.output.splitlines() if "\t" in line]
    assert lines[0] == [str(folder), "error", "a folder, not an image file"]
    assert lines[1][0] == str(image) and lines[1][1] in {*LABELS, "unsure"}
