"""Training gives its bundles int8 copies judged on the validation split, and the cascade
whose stages keep the fp32 full network's validation top-1."""

import hashlib
import json

import numpy as np
import pytest

from foramflow.bundle import Bundle
from foramflow.bundle.cascade import MAX_TOP1_LOSS, MIN_VALIDATION_IMAGES
from foramflow.bundle.engine import Engine, cascade_problem, validated
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


def test_each_bundle_gets_an_int8_copy_judged_on_the_validation_split(run):
    for path in (run.bundle, run.fast_bundle):
        bundle = Bundle.load(path)
        record = bundle.meta.int8
        assert record.validation_images >= MIN_VALIDATION_IMAGES
        assert record.fp32_validation_top1 == pytest.approx(bundle.meta.metrics["accuracy"])
        file = bundle.path / record.file
        assert record.file_sha256 == hashlib.sha256(file.read_bytes()).hexdigest()
        kept = record.validation_top1 >= record.fp32_validation_top1 - MAX_TOP1_LOSS
        assert validated(record) is kept
        int8 = Engine(bundle, precision="int8", calibrated=False)
        assert int8.predict(np.zeros((2, 1, 32, 32), np.float32)).shape == (2, len(bundle.labels))
    metrics = json.loads((run.out / "metrics.json").read_text())
    assert metrics["int8"]["validation_top1"] == Bundle.load(run.bundle).meta.int8.validation_top1


def test_the_cascade_keeps_the_fp32_top1_and_runs_the_files_it_names(run):
    bundle = Bundle.load(run.bundle)
    record = bundle.meta.cascade
    assert record is not None, "a sure one view on simple shapes should answer for most images"
    assert record.held_out_top1 >= record.full_top1 - MAX_TOP1_LOSS
    assert record.full_top1 == pytest.approx(bundle.meta.metrics["accuracy"])
    assert cascade_problem(bundle) is None
    assert (bundle.path / record.one_view_file).is_file()
    batch = np.random.default_rng(0).random((4, 1, 32, 32), dtype=np.float32)
    probs = Engine(bundle, precision="cascade").predict(batch)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
