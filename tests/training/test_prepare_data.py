"""Listing, reading and hashing the training images, before any training."""

import builtins
import io
import os

import pytest

from foramflow.data.dataset import image_set_hash, load_image_set
from foramflow.progress import Recorded
from foramflow.training.config import TrainConfig
from foramflow.training.prepared import prepare_data
from image_sets import write_shape_set


@pytest.fixture
def unreadable(monkeypatch):
    """Make a file unreadable: chmod 000, and, for root (who reads anything), make opening
    it fail as it does for a user."""

    def make(path):
        path.chmod(0)
        if os.geteuid() != 0:
            return
        real_open = builtins.open

        def denied(file, *args, **kwargs):
            if isinstance(file, str | os.PathLike) and os.fspath(file) == os.fspath(path):
                raise PermissionError(13, "Permission denied", os.fspath(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", denied)
        monkeypatch.setattr(io, "open", denied)

    return make


def _prepare(data, tmp_path, **options):
    config = TrainConfig(
        model="base_cyclic",
        data=str(data),
        out=str(tmp_path / "run"),
        input_size=16,
        min_per_class=5,
        workers=1,
    )
    progress = Recorded()
    prepared = prepare_data(config.model_copy(update=options), progress)
    return prepared, "\n".join(progress.messages)


def test_unreadable_image_is_skipped_and_left_out_of_the_hash(tmp_path, unreadable):
    data = write_shape_set(tmp_path / "data", n_per_class=6, size=16)
    locked = data / "disc" / "disc_003.png"
    unreadable(locked)
    prepared, output = _prepare(data, tmp_path)
    assert f"skipped {locked}: cannot open file (Permission denied)" in output
    assert prepared.skipped == {str(locked): "cannot open file (Permission denied)"}
    assert locked not in prepared.paths and len(prepared.paths) == 17
    locked.chmod(0o644)
    locked.unlink()
    assert prepared.dataset_hash == image_set_hash(load_image_set(data, min_per_class=5))


def test_oversize_training_image_is_skipped_under_the_configured_cap(tmp_path):
    from PIL import Image

    data = write_shape_set(tmp_path / "data", n_per_class=6, size=16)
    Image.new("L", (40, 30)).save(data / "bar" / "big.png")
    prepared, output = _prepare(data, tmp_path, max_pixels=1000)
    assert list(prepared.skipped) == [str(data / "bar" / "big.png")]
    assert "big.png: image of 40 × 30 pixels" in output
    assert len(prepared.paths) == 18
