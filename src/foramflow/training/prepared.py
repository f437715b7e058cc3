"""The labelled image set of a run, read, preprocessed and split once for every trainer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foramflow.data.arrays import preprocess_all
from foramflow.data.dataset import ImageSet, image_set_hash, load_image_set
from foramflow.data.split import stratified_split
from foramflow.imaging.preprocess import PreprocessSpec
from foramflow.io.images import printable_path
from foramflow.progress import Progress
from foramflow.training.config import TrainConfig


@dataclass
class PreparedData:
    image_set: ImageSet
    images: np.ndarray  # (N, C, S, S) float16, readable images only
    labels: np.ndarray
    paths: list[Path]
    train_index: np.ndarray
    val_index: np.ndarray
    skipped: dict[str, str]  # printable path: why the image is not used
    dataset_hash: str  # of the images used


def prepare_data(config: TrainConfig, progress: Progress) -> PreparedData:
    """Load, preprocess and split the image set; images that cannot be listed or read are
    reported and skipped, and the set's hash is that of the images used."""
    image_set = load_image_set(
        config.data,
        min_per_class=config.min_per_class,
        include_predictions=config.include_predictions,
    )
    if image_set.dropped:
        listed = ", ".join(f"{k} ({v})" for k, v in image_set.dropped.items())
        progress.message(
            f"Dropped {len(image_set.dropped)} class(es) under "
            f"{config.min_per_class} images: {listed}"
        )
    spec = PreprocessSpec(size=config.input_size, channels=config.channels)
    task = progress.task("Preprocessing images", len(image_set))
    try:
        images, ok, unreadable = preprocess_all(
            image_set.paths,
            spec,
            workers=config.workers or None,
            on_progress=task.advance,
            max_pixels=config.max_pixels,
        )
    finally:
        task.done()
    skipped = {
        printable_path(p): reason for p, reason in {**image_set.skipped, **unreadable}.items()
    }
    for path, reason in skipped.items():
        progress.message(f"skipped {path}: {reason}", warning=True)
    used = image_set.subset(ok)
    train_index, val_index = stratified_split(
        used.labels, val_fraction=config.val_fraction, seed=config.seed
    )
    return PreparedData(
        image_set=image_set,
        images=images,
        labels=used.labels,
        paths=used.paths,
        train_index=train_index,
        val_index=val_index,
        skipped=skipped,
        dataset_hash=image_set_hash(used),
    )
