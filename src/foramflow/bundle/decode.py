"""Decoding images into network inputs: the one decode-and-skip rule of foramflow.

Every path that turns image files into a batch goes through :func:`decode_image`:
classification, prediction, evaluation, calibration, quantisation and the training arrays.
Anything that is not a readable image becomes an :class:`ImageReadError` whose reason is
reported per image; the other images carry on.

Kept free of pandas, pyarrow, pydantic and ONNX Runtime so that each decoding process
imports only numpy and Pillow (about 30 MB instead of about 100 MB).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from foramflow.imaging.preprocess import PreprocessSpec, load_and_preprocess
from foramflow.io.images import MAX_PIXELS, ImageReadError


def decode_image(
    path: str | Path, spec: PreprocessSpec, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """One preprocessed image (C, S, S) float32; an image of more than ``max_pixels`` is
    refused before it is decoded. Raises ImageReadError for anything else than an image."""
    path = Path(path)
    if path.is_dir():
        raise ImageReadError(path, "a folder, not an image file")
    try:
        return load_and_preprocess(path, spec, max_pixels=max_pixels)
    except ImageReadError:
        raise
    except Exception as err:  # one odd file must not stop the others
        raise ImageReadError(path, f"cannot read image ({type(err).__name__}: {err})") from err


def decode_batch(
    paths: Sequence[str | Path], spec: PreprocessSpec, max_pixels: int = MAX_PIXELS
) -> tuple[np.ndarray, list[str | None]]:
    """Preprocessed images (n_ok, C, S, S) and, per path, None or the reason it failed."""
    arrays, errors = [], []
    for path in paths:
        try:
            arrays.append(decode_image(path, spec, max_pixels))
            errors.append(None)
        except ImageReadError as err:
            errors.append(err.reason)
    if not arrays:
        return np.empty((0, spec.channels, spec.size, spec.size), np.float32), errors
    return np.stack(arrays), errors
