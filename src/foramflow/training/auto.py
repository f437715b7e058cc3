"""``--model auto``: the recipe that suits a training set and the machine, and why.

The choice rests on measurements on 84 classes of NDSB plankton, on 2 CPU cores:

- On a CPU, a frozen pretrained network with a small trained tail (transfer learning)
  beats in minutes what the paper's Base-Cyclic reaches in hours from scratch (75.8 %
  against 74.1 % on 84 plankton classes; 12 against 96 minutes on 2 cores), and it needs
  far fewer images per class. It is the choice for small sets.
- Given enough images, fine-tuning the backbone's top stages on cached maps of the others
  does better still (80.0 % against 76.1 % on the same 84 classes at 160 px, 16 400
  training images, in 17 minutes on a processor with bf16, at most 30 without; 80.3 %
  against 77.0 % on 30 classes × 100 images). On 30 classes × 20 images the two tie (on
  four splits 70.2 % against 69.4 % on average, macro F1 0.681 each), and on 105
  phytoplankton images the top falls behind (81 % against 100 % of 21 images): the top
  is chosen from 1 000 images on.
- With a GPU, the paper's network trains in minutes; with enough images per class it is
  the choice there (it learns the domain instead of reusing ImageNet's features).
- Classes too small to learn from are dropped, but a set is never emptied: the minimum
  follows the recipe (the paper's 40 images for a network trained from scratch, 10 for a
  tail on frozen features, which learns from a handful), and drops at most a quarter of
  the classes.
- Colour is kept when the images carry it (stained or coloured specimens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from foramflow.progress import Progress
    from foramflow.training.config import TrainConfig

PAPER_MODEL = "base_cyclic"
TRANSFER_MODEL = "efficientnet_lite0_tl"
TOP_MODEL = "efficientnet_lite0_top"
TOP_MIN_IMAGES = 1000  # a set this large fine-tunes the top; a smaller one trains a tail
PAPER_MIN_PER_CLASS = 40
TRANSFER_MIN_PER_CLASS = 10
FEWEST_USEFUL = 2  # one image to train on and one to validate with
GPU_IMAGES_PER_CLASS = 200  # a median class this large trains the paper's network well


@dataclass
class Choice:
    """What ``auto`` chose; ``reasons`` say why, one sentence each."""

    model: str
    min_per_class: int
    channels: int
    reasons: list[str] = field(default_factory=list)


def choose_recipe(
    counts: Sequence[int], *, gpu: bool, colour: bool, min_per_class: int | None = None
) -> Choice:
    """The model, class minimum and channels for a set with these images per class."""
    counts = np.asarray(counts)
    median = float(np.median(counts)) if len(counts) else 0.0
    total = int(counts.sum())
    reasons = []
    if gpu and median >= GPU_IMAGES_PER_CLASS:
        model, wanted = PAPER_MODEL, PAPER_MIN_PER_CLASS
        reasons.append(
            f"a GPU and a median class of {median:.0f} images (≥ {GPU_IMAGES_PER_CLASS}): "
            "the paper's Base-Cyclic network, trained from scratch"
        )
    elif total >= TOP_MIN_IMAGES:
        model, wanted = TOP_MODEL, TRANSFER_MIN_PER_CLASS
        reasons.append(
            f"{total} images (≥ {TOP_MIN_IMAGES}): EfficientNet-Lite0 (ImageNet) with its last "
            "four stages fine-tuned on cached maps of the frozen others, the most accurate "
            "recipe measured on a CPU (on 2 cores 8 to 15 minutes per 10 000 images)"
        )
    else:
        model, wanted = TRANSFER_MODEL, TRANSFER_MIN_PER_CLASS
        where = "a GPU" if gpu else "no GPU"
        reasons.append(
            f"{where}, {total} images (< {TOP_MIN_IMAGES}) and a median class of {median:.0f}: "
            "transfer learning (a frozen ImageNet EfficientNet-Lite0 and a small trained "
            "tail) learns most from few images"
        )
    if min_per_class is None:
        min_per_class = _minimum_keeping_most_classes(counts, wanted)
        if min_per_class < wanted:
            reasons.append(
                f"classes need at least {min_per_class} images, not {wanted}: {wanted} would "
                f"drop {int((counts < wanted).sum())} of {len(counts)} classes"
            )
    channels = 3 if colour else 1
    reasons.append("colour images: colour kept" if colour else "grey images: grey input")
    return Choice(model, min_per_class, channels, reasons)


def _minimum_keeping_most_classes(counts: np.ndarray, wanted: int) -> int:
    """``wanted``, lowered as far as needed to keep three quarters of the classes.

    A class needs one training and one validation image at least; with fewer than five,
    its validation score rests on one image, which the report makes visible.
    """
    if not len(counts) or (counts >= wanted).mean() >= 0.75:
        return wanted
    quartile = int(np.floor(np.quantile(counts, 0.25)))
    return max(FEWEST_USEFUL, min(wanted, quartile))


def carries_colour(paths: Sequence[str | Path], *, sample: int = 64, seed: int = 0) -> bool:
    """True when the images hold colour: channels that differ, not grey saved as RGB."""
    from foramflow.io.images import ImageReadError, read_image

    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(paths), size=min(sample, len(paths)), replace=False)
    for i in chosen:
        try:
            image = read_image(paths[i])
        except ImageReadError:
            continue
        if image.ndim == 3 and _channels_differ(image):
            return True
    return False


def _channels_differ(image: np.ndarray, tolerance: float = 2 / 255) -> bool:
    """JPEG chroma noise stays under ``tolerance``; stained specimens do not."""
    spread = image.max(axis=2) - image.min(axis=2)
    return float(np.quantile(spread, 0.99)) > tolerance


def resolve_auto(config: TrainConfig, progress: Progress) -> TrainConfig:
    """``config`` with ``model: auto`` (and the choices it leaves open) made for its set.

    A configuration that names its model is returned as it is. The choice and its reasons
    are reported; the run's config.yaml records the resolved configuration.
    """
    from foramflow.data.dataset import load_image_set
    from foramflow.training.config import AUTO, TrainConfig
    from foramflow.training.device import resolve_device

    if config.model != AUTO:
        return config
    image_set = load_image_set(
        config.data, min_per_class=1, include_predictions=config.include_predictions
    )
    colour = carries_colour(image_set.paths) if config.channels is None else config.channels == 3
    gpu = resolve_device(config.device).type == "cuda"
    choice = choose_recipe(
        image_set.counts(), gpu=gpu, colour=colour, min_per_class=config.min_per_class
    )
    progress.message(f"model auto: {choice.model}")
    for reason in choice.reasons:
        progress.message(f"  {reason}")
    chosen = {"model": choice.model, "min_per_class": choice.min_per_class}
    return TrainConfig(**{**config.model_dump(), **chosen, "channels": choice.channels})
