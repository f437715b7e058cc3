"""End to end on a tiny learnable set: train, export, evaluate, and check the bundle."""

import json
import os
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
import torch

from foramflow.bundle import Bundle
from foramflow.imaging.preprocess import load_and_preprocess
from foramflow.models.registry import create_model
from foramflow.training.config import TrainConfig
from foramflow.training.full import FullTrainer
from foramflow.training.run_folder import RunFolderExists
from image_sets import write_shape_set


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    data = write_shape_set(tmp_path_factory.mktemp("learnable"), n_per_class=60)
    out = tmp_path_factory.mktemp("runs") / "shapes"
    config = TrainConfig(
        model="base_cyclic",
        data=str(data),
        out=str(out),
        input_size=32,
        epochs=10,
        batch_size=16,
        min_per_class=10,
        seed=0,
        workers=1,
    )
    report = FullTrainer(config).run()
    keep = os.environ.get("FORAMFLOW_KEEP_TEST_BUNDLE")  # CI classifies with it, torch-free
    if keep:
        shutil.copytree(out / "bundle", keep, dirs_exist_ok=True)
    return config, out, report


def test_tiny_set_is_learned(trained_run):
    _, out, _ = trained_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.95
    assert metrics["n_images"] == 36  # 20 % of 180


def test_run_folder_holds_every_output(trained_run):
    _, out, report = trained_run
    for name in (
        "config.yaml",
        "log.csv",
        "checkpoint_best.pt",
        "checkpoint_last.pt",
        "split.csv",
        "bundle/model.onnx",
        "bundle/model.json",
        "bundle/network_info.xml",
        "bundle/model.nhwc.onnx",
        "bundle/validation.npz",
        "evaluation/confusion_matrix.csv",
        "evaluation/confusion_matrix.png",
        "evaluation/training_curves.png",
        "evaluation/per_class_metrics.csv",
    ):
        assert (out / name).is_file(), name
    log = pd.read_csv(out / "log.csv")
    assert list(log["epoch"]) == list(range(1, 11))
    html = report.read_text()
    assert "Confusion matrix" in html and "data:image/png;base64," in html
    assert TrainConfig.from_yaml(out / "config.yaml") == trained_run[0]


def test_onnx_bundle_agrees_with_pytorch(trained_run):
    _, out, _ = trained_run
    bundle = Bundle.load(out / "bundle")
    meta = bundle.meta
    network = create_model(
        meta.model.name,
        n_classes=len(meta.labels),
        input_size=32,
        channels=1,
        **meta.model.params,
    )
    network.load_state_dict(torch.load(out / "checkpoint_best.pt", weights_only=True))
    network.eval()
    paths = pd.read_csv(out / "split.csv")["path"][:40]
    batch = np.stack([load_and_preprocess(p, bundle.spec) for p in paths])
    onnx_probs = bundle.predict_batch(batch)
    with torch.no_grad():
        torch_probs = torch.softmax(network(torch.from_numpy(batch)), 1).numpy()
    assert np.array_equal(onnx_probs.argmax(1), torch_probs.argmax(1))
    assert np.abs(onnx_probs - torch_probs).max() < 1e-4


def test_bundle_metadata_and_network_info(trained_run):
    _, out, _ = trained_run
    meta = json.loads((out / "bundle" / "model.json").read_text())
    assert meta["labels"] == ["bar", "disc", "ring"]
    assert meta["threshold"] == 0.8
    assert meta["input"]["size"] == 32 and meta["input"]["channels"] == 1
    assert meta["preprocessing"]["params"] == {"size": 32, "channels": 1}
    assert len(meta["training_set"]["hash"]) == 64
    assert np.array(meta["validation_confusion"]["matrix"]).sum() == 36
    assert {"torch", "onnxruntime", "foramflow"} <= set(meta["software"])
    root = ET.parse(out / "bundle" / "network_info.xml").getroot()
    assert "'img_type': 'greyscale'" in root.findtext("params/cnn")  # as MISO reads it
    assert root.findtext("load/training_epochs") == "10"
    assert root.find("load/training_time").get("unit") == "s"
    assert [e.findtext("code") for e in root.iter("label")] == meta["labels"]


def test_training_report_times_inference_with_the_classify_engine(trained_run):
    _, out, report = trained_run
    html = report.read_text()
    assert "inference (the classify engine)" in html
    assert "ONNX Runtime, fp32" in html and "batches of 64" in html
    meta = json.loads((out / "bundle" / "model.json").read_text())
    assert meta["inference_ms_per_image"] > 0


def test_existing_run_folder_is_not_overwritten(trained_run):
    config, _, _ = trained_run
    with pytest.raises(RunFolderExists):
        FullTrainer(config)


def test_resume_continues_from_the_last_checkpoint(trained_run, tmp_path):
    config, out, _ = trained_run
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    more = config.model_copy(update={"out": str(copy), "epochs": 11})
    FullTrainer(more, resume=True).run()
    log = pd.read_csv(copy / "log.csv")
    assert list(log["epoch"]) == list(range(1, 12))


def test_the_bundle_keeps_the_validation_outputs_the_metrics_came_from(trained_run):
    from foramflow.bundle.validation import read_validation

    _, out, _ = trained_run
    bundle = Bundle.load(out / "bundle")
    validation = read_validation(bundle)
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(validation.labels) == metrics["n_images"] == 36
    assert bundle.meta.calibration is None  # 36 images are too few to fit a temperature on
    report = (out / "evaluation" / "report.html").read_text()
    assert "<td>calibration</td><td>none: the network" in report
    predicted = validation.probabilities.argmax(axis=1)
    assert (predicted == validation.labels).mean() == pytest.approx(metrics["accuracy"])
    k = len(bundle.labels)
    confusion = np.bincount(validation.labels * k + predicted, minlength=k * k).reshape(k, k)
    np.testing.assert_array_equal(confusion, bundle.meta.validation_confusion.matrix)


def test_a_run_with_enough_validation_images_calibrates_its_bundle_on_them(tmp_path):
    """One epoch leaves a network that errs on some of 120 validation images: the bundle
    holds the temperature fitted on them, and classify's probabilities carry it."""
    from foramflow.bundle.engine import Engine, apply_temperature
    from foramflow.bundle.validation import read_validation
    from foramflow.evaluate.calibration import fit_temperature

    data = write_shape_set(tmp_path / "data", n_per_class=200, size=32, seed=1)
    config = TrainConfig(
        model="base_cyclic", data=str(data), out=str(tmp_path / "run"), input_size=32,
        epochs=1, batch_size=32, min_per_class=10, workers=1,
    )  # fmt: skip
    FullTrainer(config).run()
    bundle = Bundle.load(tmp_path / "run" / "bundle")
    validation = read_validation(bundle)
    assert len(validation.labels) == 120
    assert (validation.probabilities.argmax(axis=1) != validation.labels).any()
    calibration = bundle.meta.calibration
    assert calibration.temperature == pytest.approx(
        fit_temperature(validation.probabilities, validation.labels)
    )
    assert calibration.n_images == 120 and calibration.ece_after <= calibration.ece_before
    report = (tmp_path / "run" / "evaluation" / "report.html").read_text()
    assert f"temperature {calibration.temperature:.3f} fitted on this split" in report
    image = load_and_preprocess(next((data / "disc").iterdir()), bundle.spec)[None]
    raw = Engine(bundle, precision="fp32", calibrated=False).predict(image)
    np.testing.assert_allclose(
        Engine(bundle, precision="fp32").predict(image),
        apply_temperature(raw, calibration.temperature),
        atol=1e-6,
    )
