"""Fine-tuning a backbone's top on cached maps, end to end on a tiny set: learning, the
cache, resuming an interrupted run, and the exported bundle."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import foramflow.training.export as export
import foramflow.training.frozen_features as frozen_features
import foramflow.training.top as top_module
from foramflow.bundle import Bundle
from foramflow.bundle.quantize import quantize_bundle
from foramflow.imaging.preprocess import load_and_preprocess
from foramflow.models.registry import create_model
from foramflow.models.top_tuned import dihedral_views
from foramflow.progress import Recorded
from foramflow.similar import open_reference
from foramflow.training.config import TrainConfig
from foramflow.training.feature_cache import ExtractorSpec, FeatureCache
from foramflow.training.step import train
from foramflow.training.top import TopTrainer, turned, view, view_numbers
from image_sets import write_shape_set

N_IMAGES, EPOCHS, TURNS, COPIES = 60, 6, 4, 1


class InterruptAt(Recorded):
    """Stops the run (as Ctrl-C would) once the given epoch has been checkpointed."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def message(self, text: str, *, warning: bool = False) -> None:
        super().message(text, warning=warning)
        if text.startswith(f"epoch {self.epoch}:"):
            raise KeyboardInterrupt


def tiny_config(root, **changes) -> TrainConfig:
    """A top run on 60 shapes in three classes, read at 32 px, with its own cache."""
    data = write_shape_set(root / "data", n_per_class=N_IMAGES // 3, size=48)
    settings = {
        "data": str(data),
        "out": str(root / "straight"),
        "model": "efficientnet_lite0_top",
        "input_size": 32,
        "epochs": EPOCHS,
        "batch_size": 16,
        "min_per_class": 10,
        "workers": 1,
        "precision": "fp32",
        "feature_cache": str(root / "cache"),
    }
    return TrainConfig(**{**settings, **changes})


def export_a_copy_of(run, patch) -> None:
    """Later runs' ONNX export copies ``run``'s (checked there; slow for EfficientNet)."""
    patch.setattr(
        export,
        "export_onnx",
        lambda network, path, **_: shutil.copy(run.bundle / "model.onnx", path),
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One run straight through; a second, on the same cache, interrupted after epoch 2,
    resumed, failing in its export, and resumed again. Counts the images the frozen bottom
    sees in each. The later runs' ONNX export is a copy of the first's (checked there; slow
    for EfficientNet)."""
    root = tmp_path_factory.mktemp("top")
    config = tiny_config(root, augmented_copies=COPIES)
    seen: dict[str, list[int]] = {}
    real = frozen_features.FrozenFeatures.__call__

    def counting(self, images):
        seen[name].append(len(images))
        return real(self, images)

    real_epochs = TopTrainer.train_epochs

    def noting_the_rows_file(self, batches, *args, **kwargs):
        rows_files[name] = self.rows_file.stat().st_size, batches.train_x.shape
        return real_epochs(self, batches, *args, **kwargs)

    rows_files: dict[str, tuple] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(frozen_features.FrozenFeatures, "__call__", counting)
        patch.setattr(TopTrainer, "train_epochs", noting_the_rows_file)
        name = "straight"
        seen[name] = []
        straight = train(config.data, config.out, config=config)
        export_a_copy_of(straight, patch)
        name = "interrupted"
        seen[name] = []
        resumed = config.model_copy(update={"out": str(root / "resumed")})
        with pytest.raises(KeyboardInterrupt):
            TopTrainer(resumed, progress=InterruptAt(2)).run()
        log_at_interruption = pd.read_csv(root / "resumed" / "log.csv")
        name = "resumed"
        seen[name] = []
        real_export = top_module.export_and_evaluate
        patch.setattr(top_module, "export_and_evaluate", export_fails)
        with pytest.raises(OSError, match="disk full"):
            TopTrainer(resumed, resume=True).run()
        patch.setattr(top_module, "export_and_evaluate", real_export)
        TopTrainer(resumed, resume=True).run()
    return root, straight, log_at_interruption, seen, rows_files


def export_fails(*args, **kwargs):
    raise OSError("disk full")


def test_tiny_set_is_learned(runs):
    _, straight, *_ = runs
    assert straight.metrics["accuracy"] > 0.9
    log = pd.read_csv(straight.out / "log.csv")
    assert list(log["epoch"]) == list(range(1, EPOCHS + 1))
    assert log["train_loss"].iloc[-1] < log["train_loss"].iloc[0]


def test_bottom_rows_are_computed_once_for_each_view_then_read_back(runs):
    """Every image as it lies; the training images also in three more turns and their
    augmented copies (validation reads the images as they lie only)."""
    root, straight, _, seen, _ = runs
    n_train = int((pd.read_csv(straight.out / "split.csv")["part"] == "train").sum())
    rows = N_IMAGES + (TURNS - 1 + COPIES) * n_train
    assert sum(seen["straight"]) == rows
    assert seen["interrupted"] == [] and seen["resumed"] == []
    folders = [p for p in (root / "cache").iterdir() if p.is_dir()]
    assert len(folders) == 1
    with FeatureCache(folders[0]) as cache:
        assert len(cache) == rows
        assert cache.spec.output.startswith("maps@")


def test_training_rows_lie_in_a_file_while_the_top_trains_and_are_deleted_after(runs):
    """Memory-mapped (the system may page them out), every view of every training image,
    float16; gone from the run folder after a run, an interruption or a failed export."""
    root, straight, _, _, rows_files = runs
    n_train = int((pd.read_csv(straight.out / "split.csv")["part"] == "train").sum())
    size, shape = rows_files["straight"]
    n, views, width = shape
    assert (n, views) == (n_train, TURNS + COPIES)
    assert size >= n * views * width * 2  # float16, after the .npy header
    assert set(rows_files) == {"straight", "interrupted", "resumed"}
    for run in ("straight", "resumed"):
        assert not (root / run / top_module.ROWS_FILE).exists()


def test_cached_vectors_are_written_into_the_array_given(tmp_path):
    """Into a memory map, say: the same vectors as a fresh array, identical files once."""
    spec = ExtractorSpec("efficientnet_lite0", "0" * 64, {}, False, "none", "fp32")
    head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4))
    head.cyclic = False  # one vector per image, as batch sizing asks
    images = np.random.default_rng(1).random((5, 1, 4, 4), dtype=np.float32)
    hashes = ["a", "b", "a", "c", "d"]  # the first and third images: the same file
    extract = frozen_features.FrozenFeatures(head, device=torch.device("cpu"), bf16=False)
    with FeatureCache.open(tmp_path / "cache", spec, dim=4, weights_path="w") as cache:
        cache.put(["d"], np.ones((1, 4), np.float32))
        fresh, computed, _ = frozen_features.cached_features(
            cache, extract, images, hashes, progress=Recorded()
        )
        mapped = np.lib.format.open_memmap(tmp_path / "m.npy", "w+", np.float16, (5, 2, 4))
        out, again, _ = frozen_features.cached_features(
            cache, extract, images, hashes, dtype=np.float16, out=mapped[:, 1], progress=Recorded()
        )
    assert computed == 3 and again == 0
    assert out.base is not None and np.shares_memory(out, mapped)
    np.testing.assert_array_equal(mapped[:, 1], fresh.astype(np.float16))
    np.testing.assert_array_equal(mapped[:, 0], 0)
    np.testing.assert_array_equal(fresh[0], fresh[2])
    np.testing.assert_array_equal(fresh[4], 1)


def test_views_are_the_turns_then_augmented_copies_drawn_from_each_image():
    images = np.random.default_rng(0).random((3, 1, 16, 16), dtype=np.float32)
    hashes = ["a", "b", "c"]
    for k in range(TURNS):
        np.testing.assert_array_equal(view(images, hashes, k), turned(images, hashes, k))
    copy = view(images, hashes, TURNS)
    np.testing.assert_array_equal(view(images, hashes, TURNS), copy)  # the same every run
    assert not np.allclose(view(images, hashes, TURNS + 1), copy)
    assert all(not np.allclose(copy, turned(images, hashes, k)) for k in range(TURNS))


def test_an_interrupted_run_resumes_where_it_stopped_and_ends_as_one_run_would(runs):
    """Interrupted in training, then in its export: the end is the uninterrupted run's."""
    root, straight, at_interruption, *_ = runs
    assert list(at_interruption["epoch"]) == [1, 2]
    resumed = pd.read_csv(root / "resumed" / "log.csv")
    columns = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"]
    pd.testing.assert_frame_equal(
        resumed[columns], pd.read_csv(straight.out / "log.csv")[columns], atol=1e-5
    )
    metrics = json.loads((root / "resumed" / "metrics.json").read_text())
    assert metrics["accuracy"] == straight.metrics["accuracy"]


def test_bundle_answers_as_the_network_and_does_not_depend_on_how_an_image_lies(runs):
    _, straight, *_ = runs
    bundle = Bundle.load(straight.bundle)
    meta = bundle.meta
    network = create_model(
        meta.model.name, n_classes=len(meta.labels), input_size=32, channels=1, **meta.model.params
    )
    network.load_state_dict(torch.load(straight.out / "checkpoint_best.pt", weights_only=True))
    network.eval()
    paths = pd.read_csv(straight.out / "split.csv")["path"][:24]
    batch = np.stack([load_and_preprocess(p, bundle.spec) for p in paths])
    onnx_probs = bundle.predict_batch(batch)
    with torch.no_grad():
        torch_probs = torch.softmax(network(torch.from_numpy(batch)), 1).numpy()
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-4)
    for quarter_turns in (1, 2, 3):
        turned_probs = bundle.predict_batch(turned(batch, [], quarter_turns))
        np.testing.assert_allclose(turned_probs, onnx_probs, atol=1e-4)


def test_the_fast_bundle_is_the_same_network_reading_each_image_once(runs):
    """The bundle's answer is the mean of the fast bundle's answers over the four turns, and
    the run reports the fast bundle's own validation figures."""
    _, straight, *_ = runs
    bundle, fast = Bundle.load(straight.bundle), Bundle.load(straight.fast_bundle)
    assert fast.meta.model.params["cyclic"] is False and bundle.meta.model.params["cyclic"]
    paths = pd.read_csv(straight.out / "split.csv")["path"][:24]
    batch = np.stack([load_and_preprocess(p, bundle.spec) for p in paths])
    each_turn = [fast.predict_batch(turned(batch, [], k)) for k in range(TURNS)]
    assert not np.allclose(each_turn[0], each_turn[1], atol=1e-3)  # one view: turns differ
    np.testing.assert_allclose(np.mean(each_turn, axis=0), bundle.predict_batch(batch), atol=1e-5)
    assert straight.metrics["one_view"]["accuracy"] == fast.meta.metrics["accuracy"]
    assert fast.meta.inference_ms_per_image > 0


def test_the_bundle_gets_an_int8_copy(runs, tmp_path):
    """Its graph (four turns, the log of their mean) defeats onnxruntime's symbolic shape
    inference, which the int8 preparation therefore skips."""
    _, straight, *_ = runs
    copy = shutil.copytree(straight.bundle, tmp_path / "bundle")
    images = list(pd.read_csv(straight.out / "split.csv")["path"])
    record = quantize_bundle(copy, images, n_calibration=16, n_check=16)
    assert (copy / record["file"]).is_file() and record["check_images"] == 16
    assert 0 <= record["top1_agreement"] <= 1
    assert Bundle.load(copy).meta.int8.file == record["file"]


def test_the_best_epoch_is_validated_on_the_images_as_they_lie(runs):
    """The logged validation loss of the kept epoch is the one-view network's, not the
    four turns' mean (which the bundle's evaluation reports)."""
    _, straight, *_ = runs
    bundle = Bundle.load(straight.bundle)
    params = bundle.meta.model.params
    split = pd.read_csv(straight.out / "split.csv")
    validation = split[split["part"] == "validation"]
    images = torch.from_numpy(
        np.stack([load_and_preprocess(p, bundle.spec) for p in validation["path"]])
    )
    labels = torch.tensor([bundle.meta.labels.index(c) for c in validation["class"]])
    best = torch.load(straight.out / "checkpoint_best.pt", weights_only=True)
    losses = {}
    for cyclic in (False, True):
        network = create_model(
            bundle.meta.model.name,
            n_classes=len(bundle.meta.labels),
            input_size=32,
            channels=1,
            **{**params, "cyclic": cyclic},
        )
        network.load_state_dict(best)
        network.eval()
        with torch.no_grad():
            losses[cyclic] = float(torch.nn.functional.cross_entropy(network(images), labels))
    log = pd.read_csv(straight.out / "log.csv")
    kept = log.sort_values(["val_accuracy", "val_loss"], ascending=[False, True]).iloc[0]
    assert kept["val_loss"] == pytest.approx(losses[False], abs=2e-3)  # float16 rows
    assert abs(kept["val_loss"] - losses[True]) > 10 * abs(kept["val_loss"] - losses[False])


def test_a_cache_of_maps_is_not_taken_for_feature_vectors(runs):
    root, *_ = runs
    with pytest.raises(ValueError, match="intermediate maps"):
        open_reference(root / "cache")


def test_maps_have_their_own_cache_key_and_vector_caches_keep_theirs():
    spec = ExtractorSpec(
        backbone="efficientnet_lite0",
        weights_sha256="ab" * 32,
        preprocessing={"params": {"size": 128, "channels": 1}},
        cyclic=True,
        pool="max",
        precision="fp32",
    )
    # the key a vector cache had before maps were cached, from its fields as they were then
    assert spec.key() == "32af9c5e3d267896"
    maps = ExtractorSpec(**{**spec.__dict__, "output": "maps@11"})
    assert maps.key() != spec.key()


def test_mirrored_views_are_numbered_below_zero_after_the_turns_and_before_the_copies():
    images = np.random.default_rng(0).random((3, 1, 16, 16), dtype=np.float32)
    assert view_numbers(mirror=False, augmented=2) == [0, 1, 2, 3, 4, 5]
    assert view_numbers(mirror=True, augmented=1) == [0, 1, 2, 3, -1, -2, -3, -4, 4]
    views = torch.from_numpy(np.concatenate([view(images, [], k) for k in range(-1, -5, -1)]))
    mirrored = dihedral_views(torch.from_numpy(images))[4 * len(images) :]
    torch.testing.assert_close(views, mirrored)


def test_with_flips_the_bundle_answers_alike_for_an_image_and_its_mirror_image(tmp_path):
    config = tiny_config(tmp_path, epochs=2, flips=True)
    result = train(config.data, config.out, config=config)
    bundle = Bundle.load(result.bundle)
    assert bundle.meta.model.params["mirror"] is True
    split = pd.read_csv(result.out / "split.csv")
    (folder,) = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    with FeatureCache(folder) as cache:  # every image as it lies, the training ones in 7 more
        assert len(cache) == len(split) + 7 * int((split["part"] == "train").sum())
    paths = split["path"][:8]
    batch = np.stack([load_and_preprocess(p, bundle.spec) for p in paths])
    probs = bundle.predict_batch(batch)
    np.testing.assert_allclose(bundle.predict_batch(batch[..., ::-1].copy()), probs, atol=1e-4)
    turned_mirror = turned(batch[..., ::-1], [], 1)
    np.testing.assert_allclose(bundle.predict_batch(turned_mirror), probs, atol=1e-4)
