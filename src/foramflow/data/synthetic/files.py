"""Write generated images as the files a microscope set-up would leave: 8-bit PNG, 16-bit labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def save_png(path: Path, image: np.ndarray) -> None:
    """Save a float image in [0, 1], grey (H, W) or RGB (H, W, 3), as an 8-bit PNG."""
    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, compress_level=1)


def save_labels(path: Path, labels: np.ndarray) -> None:
    """Save an integer label image (0 = background) as a 16-bit PNG."""
    if labels.max(initial=0) > np.iinfo(np.uint16).max:
        raise ValueError(f"{path}: more labels than a 16-bit PNG holds")
    Image.fromarray(labels.astype(np.uint16)).save(path, compress_level=1)
