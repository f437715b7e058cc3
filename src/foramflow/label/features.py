"""Image features for label suggestions: one small function, so another source can replace it.

``image_features`` returns, per image, a vector (the preprocessed image shrunk to 16 × 16
grey, so both brightness and shape count) for nearest-neighbour work, and a 64-bit
difference hash for near duplicates. A learned feature extractor can take its place by
changing :data:`FEATURE_SOURCE` and :func:`image_features` alone; stored features are keyed
by source, so old ones are never mixed with new ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import numpy as np

from foramflow.imaging.preprocess import PreprocessSpec, load_and_preprocess
from foramflow.io.images import ImageReadError

FEATURE_SOURCE = "pixels16-dhash8"
_SPEC = PreprocessSpec(size=16, channels=1)


def difference_hash(image: np.ndarray) -> int:
    """64-bit dHash of a (16, 16) image: is each pixel brighter than its right neighbour?

    The image is first averaged down to 8 × 9, so small shifts and noise leave the hash
    almost unchanged while different particles differ in many bits.
    """
    small = image.reshape(8, 2, 16).mean(axis=1)  # 8 rows
    cols = np.linspace(0, 16, 10).astype(int)
    small = np.stack([small[:, a:b].mean(axis=1) for a, b in pairwise(cols)], axis=1)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0].astype(np.int64))


def image_features(paths: Sequence[Path]) -> list[tuple[np.ndarray, int] | None]:
    """(vector float32 (256,), dHash) per path; None for an unreadable image."""
    out: list[tuple[np.ndarray, int] | None] = []
    for path in paths:
        try:
            pixels = load_and_preprocess(path, _SPEC)[0]
        except ImageReadError:
            out.append(None)
            continue
        out.append((pixels.ravel().astype(np.float32), difference_hash(pixels)))
    return out
