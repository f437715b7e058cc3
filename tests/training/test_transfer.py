"""Transfer learning end to end on a tiny set: cache reuse, bundle agreement, run outputs."""

import json
import shutil
import sqlite3

import numpy as np
import pandas as pd
import pytest
import torch

import foramflow.similar as similar
import foramflow.training.export as export
import foramflow.training.frozen_features as frozen_features
from foramflow.bundle import Bundle
from foramflow.imaging.preprocess import PreprocessSpec, load_and_preprocess
from foramflow.models.backbones import WeightsError
from foramflow.models.registry import create_model
from foramflow.progress import Recorded
from foramflow.training.config import TrainConfig
from foramflow.training.feature_cache import (
    ExtractorSpec,
    FeatureCache,
    ReferenceSet,
    image_sha256,
)
from foramflow.training.frozen_features import augmented_copies
from foramflow.training.transfer import REFERENCE_FILE, TransferTrainer
from image_sets import write_shape_set

N_IMAGES, N_TRAIN, COPIES = 60, 48, 1


def config_for(data, out, cache, **changes) -> TrainConfig:
    values = dict(
        data=str(data),
        out=str(out),
        model="efficientnet_lite0_tl",
        input_size=32,
        epochs=20,
        batch_size=16,
        min_per_class=10,
        workers=1,
        precision="fp32",
        augmented_copies=COPIES,
        feature_cache=str(cache),
    )
    return TrainConfig(**{**values, **changes})


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same set trained twice with one cache, counting the images the backbone sees.

    The second run's ONNX export (slow for EfficientNet, and checked on the first run) is
    replaced by a copy of the first run's file: the same cached vectors and seed give the
    same network, which the identical log.csv confirms.
    """
    root = tmp_path_factory.mktemp("transfer")
    data = write_shape_set(root / "data", n_per_class=N_IMAGES // 3, size=48)
    seen: list[list[int]] = []
    real = frozen_features.FrozenFeatures.__call__

    def counting(self, images):
        seen[-1].append(len(images))
        return real(self, images)

    runs = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(frozen_features.FrozenFeatures, "__call__", counting)
        for name in ("first", "second"):
            seen.append([])
            config = config_for(data, root / name, root / "cache")
            TransferTrainer(config).run()
            runs.append(root / name)
            patch.setattr(
                export,
                "export_onnx",
                lambda network, path, **_: shutil.copy(root / "first/bundle/model.onnx", path),
            )
    return data, root / "cache", runs, seen


def test_second_run_takes_every_vector_from_the_cache(two_runs):
    _, _, (first, second), seen = two_runs
    assert sum(seen[0]) == N_IMAGES + COPIES * N_TRAIN
    assert seen[1] == []  # no backbone forward pass at all
    meta = json.loads((second / "bundle" / "model.json").read_text())["transfer"]
    assert meta["vectors_computed"] == 0
    assert meta["vectors_cached"] == N_IMAGES + COPIES * N_TRAIN
    # the same vectors whether computed or read back, and the same seed: the same tail
    columns = ["train_loss", "train_accuracy", "val_loss", "val_accuracy"]
    pd.testing.assert_frame_equal(
        pd.read_csv(first / "log.csv")[columns], pd.read_csv(second / "log.csv")[columns]
    )


def test_tiny_set_is_learned_and_the_run_folder_is_complete(two_runs):
    _, _, (first, _), _ = two_runs
    metrics = json.loads((first / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.9
    for name in (
        "config.yaml",
        "log.csv",
        "split.csv",
        "checkpoint_best.pt",
        "evaluation/report.html",
    ):
        assert (first / name).is_file(), name
    assert list(pd.read_csv(first / "log.csv")["epoch"]) == list(range(1, 21))
    config = TrainConfig.from_yaml(first / "config.yaml")
    assert config.model == "efficientnet_lite0_tl" and config.cyclic


def test_joined_onnx_bundle_agrees_with_pytorch_head_and_tail(two_runs):
    _, _, (first, _), _ = two_runs
    bundle = Bundle.load(first / "bundle")
    meta = bundle.meta
    network = create_model(
        meta.model.name,
        n_classes=len(meta.labels),
        input_size=32,
        channels=1,
        **meta.model.params,
    )
    network.load_state_dict(torch.load(first / "checkpoint_best.pt", weights_only=True))
    network.eval()
    paths = pd.read_csv(first / "split.csv")["path"][:24]
    batch = np.stack([load_and_preprocess(p, bundle.spec) for p in paths])
    onnx_probs = bundle.predict_batch(batch)
    with torch.no_grad():
        torch_probs = torch.softmax(network.tail(network.head(torch.from_numpy(batch))), 1)
    assert np.array_equal(onnx_probs.argmax(1), torch_probs.numpy().argmax(1))
    assert np.abs(onnx_probs - torch_probs.numpy()).max() < 1e-4


def test_cache_holds_the_head_vectors_keyed_by_image_bytes(two_runs):
    data, cache_root, (first, _), _ = two_runs
    meta = json.loads((first / "bundle" / "model.json").read_text())["transfer"]
    cache = FeatureCache(meta["feature_cache"])
    assert cache.folder.parent == cache_root and cache.folder.name == cache.spec.key()
    assert len(cache) == N_IMAGES + COPIES * N_TRAIN
    path = sorted((data / "ring").iterdir())[0]
    stored = cache.get([image_sha256(path)])[image_sha256(path)]
    head = similar.build_head(cache.spec, meta["weights_path"])
    image = load_and_preprocess(path, PreprocessSpec(size=32, channels=1))
    with torch.no_grad():
        computed = head(torch.from_numpy(image[None]))[0].numpy()
    scale = np.abs(computed).max()  # float16 storage; batches computed another way
    np.testing.assert_allclose(stored, computed, rtol=2e-3, atol=1e-3 * scale)
    labelled = cache.labelled()
    assert len(labelled.labels) == N_IMAGES
    assert labelled.labels[list(labelled.paths).index(str(path))] == "ring"
    cache.close()


def test_bundle_holds_the_reference_vectors(two_runs):
    _, _, (first, _), _ = two_runs
    reference = ReferenceSet.load(first / "bundle" / REFERENCE_FILE)
    split = pd.read_csv(first / "split.csv")
    assert list(reference.paths) == list(split["path"])
    assert list(reference.labels) == list(split["class"])
    assert reference.vectors.shape == (N_IMAGES, 1280 + 80 + 112 + 192 + 320)  # with stages
    index, similarity = reference.nearest(reference.vectors[:5].astype(np.float32), k=3)
    assert list(index[:, 0]) == [0, 1, 2, 3, 4]  # every image is its own nearest neighbour
    assert np.all(np.diff(similarity, axis=1) <= 0)


def test_extractor_key_changes_with_everything_a_vector_depends_on():
    spec = ExtractorSpec(
        backbone="efficientnet_lite0",
        weights_sha256="ab" * 32,
        preprocessing=PreprocessSpec(size=128, channels=1).to_dict(),
        cyclic=True,
        pool="max",
        precision="bf16",
    )
    same = ExtractorSpec(**{**spec.__dict__})
    assert spec.key() == same.key()
    for change in (
        {"cyclic": False},
        {"stages": True},
        {"mirror": True},
        {"precision": "fp32"},
        {"weights_sha256": "cd" * 32},
        {"preprocessing": PreprocessSpec(size=160, channels=1).to_dict()},
    ):
        assert ExtractorSpec(**{**spec.__dict__, **change}).key() != spec.key()


def test_augmented_copies_depend_only_on_the_image_and_the_copy():
    images = np.random.default_rng(0).random((3, 1, 32, 32)).astype(np.float16)
    hashes = ["a" * 64, "b" * 64, "c" * 64]
    first = augmented_copies(images, hashes, 1)
    np.testing.assert_array_equal(first, augmented_copies(images, hashes, 1))
    np.testing.assert_array_equal(first[1:], augmented_copies(images[1:], hashes[1:], 1))
    assert not np.allclose(first, augmented_copies(images, hashes, 2))
    assert not np.allclose(first, images.astype(np.float32))


def test_resnet50_without_weights_and_resume_are_refused(tmp_path):
    write_shape_set(tmp_path / "data", n_per_class=10, size=32)
    config = config_for(
        tmp_path / "data", tmp_path / "run", tmp_path / "cache", model="resnet50_tl"
    )
    with pytest.raises(WeightsError, match="--weights"):
        TransferTrainer(config)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="do not resume"):
        TransferTrainer(config.model_copy(update={"model": "efficientnet_lite0_tl"}), resume=True)


def test_frozen_features_from_onnxruntime_equal_pytorchs():
    """On a CPU in fp32 ONNX Runtime computes the vectors: PyTorch's, for any batch length."""
    torch.manual_seed(0)
    head = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU6(),
        torch.nn.Conv2d(8, 8, 3, groups=8),  # depthwise, as EfficientNet's
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    ).eval()
    head.cyclic, head.features = False, 8
    images = np.random.default_rng(0).random((70, 1, 16, 16), dtype=np.float32)
    cpu = torch.device("cpu")
    extract = frozen_features.FrozenFeatures(head, device=cpu, bf16=False)
    assert extract.by_onnxruntime
    expected = frozen_features.extract_features(head, images, device=cpu, bf16=False)
    np.testing.assert_allclose(extract(images), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(extract(images[3:4]), expected[3:4], rtol=1e-5, atol=1e-6)
    assert extract(images[:0]).shape == (0, 8)
    assert not frozen_features.FrozenFeatures(head, device=cpu, bf16=True).by_onnxruntime


def test_a_damaged_cache_is_rebuilt_and_trains_as_a_clean_one(two_runs, tmp_path, monkeypatch):
    """A NaN row and a two-byte row in a copy of the first run's cache: both computed again,
    said, and the tail trains as on the clean cache."""
    data, cache_root, (first, _), _ = two_runs
    cache = tmp_path / "cache"
    shutil.copytree(cache_root, cache)
    (database,) = cache.glob("*/features.sqlite")
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT sha256, copy, length(vector) FROM vectors").fetchall()
        nan = next(r for r in rows if r[1] == 0)
        short = next(r for r in rows if r[1] == 1)
        nans = np.full(nan[2] // 2, np.nan, np.float16).tobytes()
        update = "UPDATE vectors SET vector = ? WHERE sha256 = ? AND copy = ?"
        db.execute(update, (nans, nan[0], 0))
        db.execute(update, (b"\x00\x3c", short[0], 1))  # two bytes: one number
    db.close()
    monkeypatch.setattr(
        export,
        "export_onnx",
        lambda network, path, **_: shutil.copy(first / "bundle/model.onnx", path),
    )
    progress = Recorded()
    TransferTrainer(config_for(data, tmp_path / "run", cache), progress=progress).run()
    said = [m for m in progress.messages if m.startswith("Features:")]
    assert said and said[0].startswith(
        f"Features: {N_IMAGES + COPIES * N_TRAIN - 2} from the cache, 2 computed"
    )
    assert "2 damaged row(s) rebuilt" in said[0]
    columns = ["train_loss", "train_accuracy", "val_loss", "val_accuracy"]
    pd.testing.assert_frame_equal(
        pd.read_csv(first / "log.csv")[columns],
        pd.read_csv(tmp_path / "run" / "log.csv")[columns],
        atol=1e-3,
    )
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["accuracy"] == json.loads((first / "metrics.json").read_text())["accuracy"]
