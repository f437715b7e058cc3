"""Training gives its bundles int8 copies judged on the validation split, and the cascade
whose stages keep the fp32 full network's validation top-1."""

import hashlib
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import foramflow.training.faster as faster
from foramflow.bundle import Bundle, engine, update_bundle_meta
from foramflow.bundle.cascade import (
    MAX_TOP1_LOSS,
    MIN_VALIDATION_IMAGES,
    ONE_VIEW_FILES,
    Stage,
    image_views,
)
from foramflow.bundle.engine import Engine, cascade_here, cascade_problem
from foramflow.imaging.preprocess import load_and_preprocess
from foramflow.progress import Recorded
from foramflow.training.config import TrainConfig
from foramflow.training.step import train
from image_sets import write_shape_set


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A top run on enough shapes for a validation split of over 200 images."""
    root = tmp_path_factory.mktemp("faster")
    data = write_shape_set(root / "data", n_per_class=90, size=40)
    config = TrainConfig(
        data=str(data),
        out=str(root / "run"),
        model="efficientnet_lite0_top",
        input_size=32,
        epochs=2,
        batch_size=32,
        val_fraction=0.8,
        workers=1,
        precision="fp32",
        feature_cache=str(root / "cache"),
    )
    return train(config.data, config.out, config=config)


def test_the_one_view_gets_an_int8_copy_judged_on_the_validation_split(run):
    """The full network gets none where the run has a cascade: the cascade is faster, and
    checking the full network's copy would cost a minute of every training."""
    split = pd.read_csv(run.out / "split.csv")
    validation = split[split["part"] == "validation"]
    assert Bundle.load(run.bundle).meta.cascade is not None
    assert Bundle.load(run.bundle).meta.int8 is None
    assert not (run.bundle / "model.int8.onnx").exists()
    for path in (run.fast_bundle,):
        bundle = Bundle.load(path)
        images = np.stack([load_and_preprocess(p, bundle.spec) for p in validation["path"]])
        labels = np.array([bundle.labels.index(c) for c in validation["class"]])
        record = bundle.meta.int8
        assert record.validation_images >= MIN_VALIDATION_IMAGES
        assert record.fp32_validation_top1 == pytest.approx(bundle.meta.metrics["accuracy"])
        file = bundle.path / record.file
        assert record.file_sha256 == hashlib.sha256(file.read_bytes()).hexdigest()
        # the recorded top-1 is the copy's own on the validation images, read afresh (the run
        # kept them in fp16: allow two images either way)
        int8 = Engine(bundle, precision="int8", calibrated=False)
        probs = np.concatenate(
            [int8.predict(images[i : i + 64]) for i in range(0, len(images), 64)]
        )
        assert record.validation_images == len(labels)
        top1 = (probs.argmax(1) == labels).mean()
        assert record.validation_top1 == pytest.approx(top1, abs=2 / len(labels))
    assert "int8" not in json.loads((run.out / "metrics.json").read_text())


def test_the_cascade_keeps_the_fp32_top1_and_runs_the_files_it_names(run):
    bundle = Bundle.load(run.bundle)
    records = [r for r in (bundle.meta.cascade, bundle.meta.cascade_int8) if r is not None]
    assert records, "a sure one view on simple shapes should answer for most images"
    for record in records:
        assert record.held_out_top1 >= record.full_top1 - MAX_TOP1_LOSS
        assert record.full_top1 == pytest.approx(bundle.meta.metrics["accuracy"])
        assert (bundle.path / record.one_view_file).is_file()
        assert (bundle.path / record.full_file).is_file()
        assert record.full_file in ONE_VIEW_FILES and record.views == 4
    assert cascade_problem(bundle) is None


def every_image_sent_on(run, folder, first, full):
    """A copy of the run's bundle whose cascade runs ``first`` then ``full`` (one-view
    files) and sends every image on."""
    copy = shutil.copytree(run.bundle, folder)
    shutil.copy(run.fast_bundle / "model.int8.onnx", copy / "model.one_view.int8.onnx")
    bundle = Bundle.load(copy)
    chosen = bundle.meta.cascade or bundle.meta.cascade_int8
    every_image = chosen.model_copy(
        update={
            "margin": 2.0,
            "one_view_file": first,
            "file_sha256": hashlib.sha256((copy / first).read_bytes()).hexdigest(),
            "full_file": full,
            "full_file_sha256": hashlib.sha256((copy / full).read_bytes()).hexdigest(),
        }
    )
    bundle.attach(cascade=every_image, cascade_int8=None)
    return bundle


@pytest.mark.parametrize("first", ["model.one_view.onnx", "model.one_view.int8.onnx"])
def test_the_full_stage_answers_as_the_full_network(run, first, tmp_path):
    """The one view on every turn of an image, its answer as the image lies lent by the
    first stage where that ran the same file, gives the full network's answer: here with
    a margin that sends every image on (random images: the turns differ)."""
    bundle = every_image_sent_on(run, tmp_path / "bundle", first, "model.one_view.onnx")
    batch = np.random.default_rng(0).random((5, 1, 32, 32), dtype=np.float32)
    cascade = Engine(bundle, precision="cascade", threads=1)
    full = Engine(bundle, precision="fp32", threads=1)
    np.testing.assert_allclose(cascade.predict(batch), full.predict(batch), atol=2e-6)
    assert cascade.n_rechecked == 5 and cascade.reuse_first == (first == "model.one_view.onnx")


def test_an_int8_full_stage_answers_as_the_int8_one_view_over_every_turn(run, tmp_path):
    """Its answer is the mean of the int8 copy's over the four turns (the first stage's for
    the image as it lies), with the full network's temperature."""
    int8 = "model.one_view.int8.onnx"
    bundle = every_image_sent_on(run, tmp_path / "bundle", int8, int8)
    batch = np.random.default_rng(1).random((5, 1, 32, 32), dtype=np.float32)
    cascade = Engine(bundle, precision="cascade", threads=1)
    one_view = Engine(Bundle.load(run.fast_bundle), precision="int8", threads=1, calibrated=False)
    mean = np.mean([one_view.predict(view) for view in image_views(batch, 4)], axis=0)
    expected = engine.apply_temperature(mean, bundle.temperature)
    np.testing.assert_allclose(cascade.predict(batch), expected, atol=2e-6)
    assert cascade.reuse_first and cascade.views == 4 and "int8 every view" in cascade.describe()


def test_a_quantisation_that_fails_costs_the_int8_copy_not_the_run(run, tmp_path, monkeypatch):
    copy = shutil.copytree(run.fast_bundle, tmp_path / "bundle")
    update_bundle_meta(copy, int8=None)
    (copy / "model.int8.onnx").unlink()

    def unsupported(bundle, *args, **kwargs):
        (bundle.path / "model.int8.onnx").write_bytes(b"half written")
        raise RuntimeError("an operator ONNX Runtime cannot quantise")

    monkeypatch.setattr(faster, "quantize_on_validation", unsupported)
    n = MIN_VALIDATION_IMAGES + 10
    data = SimpleNamespace(
        images=np.zeros((n, 1, 32, 32), np.float16), train_index=np.arange(10),
        val_index=np.arange(10, n),
    )  # fmt: skip
    evaluation = SimpleNamespace(
        y_true=np.zeros(n - 10, int), probabilities=np.ones((n - 10, 3)) / 3
    )
    progress = Recorded()
    bundle = Bundle.load(copy)
    assert faster.add_int8(bundle, data, evaluation, progress) is None
    assert any("no int8 copy of bundle/ (RuntimeError" in m for m in progress.messages)
    assert not (copy / "model.int8.onnx").exists()
    assert bundle.meta.int8 is None and Bundle.load(copy).meta.int8 is None


@pytest.mark.parametrize("bits", [8, 7])
def test_an_int8_first_stage_is_kept_beside_an_fp32_one_for_other_cpus(
    run, tmp_path, monkeypatch, bits
):
    """Where the int8 one view first is fastest, the bundle also keeps the fp32 cascade:
    a CPU that does not compute 8-bit weights exactly runs that one; 7-bit weights run
    exactly everywhere."""
    copy = shutil.copytree(run.bundle, tmp_path / "bundle")
    labels = np.array([0] * 240 + [1] * 60)
    sure, unsure = [0.9, 0.05, 0.05], [0.45, 0.40, 0.15]
    one_view = np.array([sure] * 240 + [unsure] * 60)
    full = SimpleNamespace(y_true=labels, probabilities=np.eye(3)[labels] * 0.8 + 0.2 / 3)
    fp32_model = (run.fast_bundle / "model.onnx").read_bytes()
    int8_model = (run.fast_bundle / "model.int8.onnx").read_bytes()
    stages = [
        Stage(one_view, "model.one_view.onnx", fp32_model, 4.0, full.probabilities),
        Stage(one_view, "model.one_view.int8.onnx", int8_model, 1.0, weight_bits=bits),
    ]
    bundle = Bundle.load(copy)
    faster.add_cascade(bundle, stages, full, 4, 1.0, Recorded())
    meta = Bundle.load(copy).meta
    assert meta.cascade_int8.one_view_file == "model.one_view.int8.onnx"
    assert meta.cascade.one_view_file == meta.cascade.full_file == "model.one_view.onnx"
    assert (copy / "model.one_view.int8.onnx").read_bytes() == int8_model
    assert (copy / "model.one_view.onnx").read_bytes() == fp32_model
    assert meta.cascade_int8.int8_weight_bits == bits
    for exact in (True, False):
        runs = meta.cascade_int8 if exact or bits == 7 else meta.cascade
        monkeypatch.setattr(engine, "int8_exact", lambda exact=exact: exact)
        assert cascade_here(Bundle.load(copy)) == runs
        assert Engine(Bundle.load(copy), precision="cascade").cascade == runs
