"""Write float images in [0, 1] to disk: 8-bit PNG/JPEG/BMP, 16-bit TIFF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from foramflow.errors import InvalidInput

#: Suffixes :func:`save_image` writes.
WRITE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


def save_image(path: str | Path, image: np.ndarray) -> None:
    """Save a grey (H, W) or colour (H, W, 3) float image in [0, 1].

    TIFF keeps 16 bits per channel (for images from 16-bit cameras); the other formats are
    8-bit, JPEG at quality 95. Folders are created as needed.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise InvalidInput(f"{path}: cannot write images of type {suffix or '(none)'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    clipped = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    if suffix in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(path, np.round(clipped * 65535).astype(np.uint16))
        return
    pixels = np.round(clipped * 255).astype(np.uint8)
    options = {"quality": 95} if suffix in (".jpg", ".jpeg") else {}
    Image.fromarray(pixels).save(path, **options)
