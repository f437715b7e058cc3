"""The bundle package owns model.json and the bundle's files; every command predicts alike."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from classify.conftest import BRIGHT, DARK, brightness_model, write_bundle, write_grey_png
from foramflow.bundle import Bundle, BundleError, BundleMeta, update_bundle_meta
from foramflow.bundle import write_bundle as write_bundle_folder
from foramflow.bundle.decode import decode_batch
from foramflow.bundle.engine import Engine
from foramflow.bundle.network_info import network_info_xml
from foramflow.bundle.predict import predict_paths
from foramflow.cli import app
from foramflow.data.arrays import preprocess_all
from foramflow.imaging.preprocess import PreprocessSpec

SRC = Path(__file__).resolve().parents[2] / "src" / "foramflow"
SPEC = PreprocessSpec(size=16, channels=1)


def test_write_bundle_writes_every_file_and_loads_back(tmp_path):
    meta = BundleMeta(name="b", labels=["dark", "bright"], preprocessing=SPEC, threshold=0.9)
    folder = write_bundle_folder(tmp_path / "b", meta, brightness_model().SerializeToString())
    assert sorted(p.name for p in folder.iterdir()) == [
        "model.json",
        "model.nhwc.onnx",
        "model.onnx",
        "network_info.xml",
    ]
    loaded = Bundle.load(folder)
    assert loaded.meta == meta
    assert (loaded.labels, loaded.input_size, loaded.threshold) == (["dark", "bright"], 16, 0.9)
    probs = loaded.predict_batch(np.full((1, 1, 16, 16), BRIGHT / 255, np.float32))
    assert probs.argmax() == 1


def test_an_invalid_field_is_a_bundle_error_naming_the_file_and_the_field(tmp_path):
    bundle = write_bundle(tmp_path / "b")
    meta = json.loads((bundle / "model.json").read_text())
    meta["calibration"] = {"temperature": "hot"}
    (bundle / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"model\.json: calibration\.temperature: "):
        Bundle.load(bundle)


def test_keys_this_version_does_not_know_are_kept_when_a_bundle_is_changed(tmp_path):
    bundle = write_bundle(tmp_path / "b")
    meta = json.loads((bundle / "model.json").read_text())
    meta["written_by"] = {"tool": "a later foramflow", "notes": [1, None]}
    (bundle / "model.json").write_text(json.dumps(meta))
    update_bundle_meta(bundle, threshold=0.9)
    stored = json.loads((bundle / "model.json").read_text())
    assert stored["written_by"] == {"tool": "a later foramflow", "notes": [1, None]}
    assert stored["threshold"] == 0.9


def test_the_input_size_is_read_from_the_preprocessing(tmp_path):
    meta = BundleMeta(labels=["dark", "bright"], preprocessing=PreprocessSpec(size=24))
    root = ET.fromstring(network_info_xml(meta))
    assert "'img_shape': [24, 24, 1]" in root.findtext("params/cnn")
    assert root.findtext("inputs/input/height") == "24"
    assert meta.input_size == 24


def test_changing_a_bundle_keeps_network_info_in_step(tmp_path):
    meta = BundleMeta(name="b", labels=["dark", "bright"], preprocessing=SPEC)
    folder = write_bundle_folder(tmp_path / "b", meta, brightness_model().SerializeToString())
    update_bundle_meta(folder, metrics={"accuracy": 0.75})
    root = ET.parse(folder / "network_info.xml").getroot()
    assert root.findtext("accuracy") == "0.75"


def test_a_zipped_bundle_cannot_be_changed(tmp_path):
    import zipfile

    bundle = write_bundle(tmp_path / "b")
    archive = tmp_path / "b.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in bundle.iterdir():
            zipped.write(path, path.name)
    with pytest.raises(BundleError, match=r"unpack the \.zip"):
        update_bundle_meta(archive, threshold=0.9)


@pytest.fixture
def awkward_inputs(tmp_path):
    """A readable image, a folder named like an image, a file that is not an image."""
    good = write_grey_png(tmp_path / "in" / "good.png", DARK)
    folder = tmp_path / "in" / "x.png"
    folder.mkdir()
    broken = tmp_path / "in" / "broken.png"
    broken.write_bytes(b"not a png")
    return [good, folder, broken]


def test_every_path_that_decodes_images_reports_an_unreadable_one_alike(tmp_path, awkward_inputs):
    good, folder, broken = awkward_inputs
    _, classify_errors = decode_batch(awkward_inputs, SPEC)
    engine = Engine(Bundle.load(write_bundle(tmp_path / "b")), precision="fp32")
    predicted = {p.path: p.error for p in predict_paths(engine, awkward_inputs)}
    _, _, training_errors = preprocess_all(awkward_inputs, SPEC, workers=1)
    assert classify_errors[0] is None and predicted[good] is None
    for index, path in ((1, folder), (2, broken)):
        assert classify_errors[index] == predicted[path] == training_errors[path]
    assert predicted[folder] == "a folder, not an image file"


def labelled_set(root: Path) -> Path:
    for label, level in (("dark", DARK), ("bright", BRIGHT)):
        for i in range(3):
            write_grey_png(root / label / f"{i}.png", level)
    return root


@pytest.mark.parametrize("command", ["predict", "calibrate", "label-predict"])
def test_every_predicting_command_runs_the_classify_engine(tmp_path, monkeypatch, command):
    calls = []
    real = Engine.predict
    monkeypatch.setattr(Engine, "predict", lambda self, b: calls.append(len(b)) or real(self, b))
    bundle = write_bundle(tmp_path / "bundle", input={"size": 16, "channels": 1})
    images = labelled_set(tmp_path / "images")
    if command == "label-predict":
        from foramflow.label.store import LabelStore

        LabelStore(tmp_path / "project").add_images(images)
        arguments = [str(tmp_path / "project"), str(bundle)]
    elif command == "calibrate":
        write_grey_png(images / "dark" / "2.png", BRIGHT)  # one wrong: a temperature to fit
        arguments = [str(bundle), str(images)]
    else:
        arguments = [str(bundle), *map(str, sorted(images.rglob("*.png")))]
    result = CliRunner().invoke(app, [command, *arguments])
    assert result.exit_code == 0, result.output
    assert sum(calls) == 6


# What only the bundle package may spell: model.json's keys and the bundle's file names.
OWNED = [
    r"\bMETA_FILE\b",
    r"\bMODEL_FILE\b",
    r"\bNETWORK_INFO_FILE\b",
    r"model\.int8\.onnx",
    r"model\.nhwc\.onnx",
    r"reference_features\.npz",
    r"\bmeta\[",
    r"\bmeta\.get\(",
    r'"model\.(json|onnx)"',
    r'"network_info\.xml"',
]


def test_only_the_bundle_package_spells_model_json_keys_and_bundle_file_names():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.is_relative_to(SRC / "bundle"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if any(re.search(pattern, line) for pattern in OWNED):
                offenders.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert offenders == []
