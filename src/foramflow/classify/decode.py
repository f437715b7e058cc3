"""Decoding in worker processes: kept free of pandas, pyarrow and ONNX Runtime so that each
decoding process imports only numpy and Pillow (about 30 MB instead of about 100 MB)."""

from __future__ import annotations

import signal

import numpy as np

from foramflow.imaging.preprocess import PreprocessSpec, load_and_preprocess
from foramflow.io.images import MAX_PIXELS, ImageReadError


def decode_batch(
    paths: list[str], spec: PreprocessSpec, max_pixels: int = MAX_PIXELS
) -> tuple[np.ndarray, list[str | None]]:
    """Preprocessed images (n_ok, C, S, S) and, per path, None or the reason it failed;
    an image of more than ``max_pixels`` fails before it is decoded."""
    arrays, errors = [], []
    for path in paths:
        try:
            arrays.append(load_and_preprocess(path, spec, max_pixels=max_pixels))
            errors.append(None)
        except ImageReadError as err:
            errors.append(err.reason)
        except Exception as err:  # one odd file must not stop the run
            errors.append(f"cannot read image ({type(err).__name__}: {err})")
    if not arrays:
        return np.empty((0, spec.channels, spec.size, spec.size), np.float32), errors
    return np.stack(arrays), errors


def ignore_sigint() -> None:
    """Worker initialiser: Ctrl-C is for the main process, which stops the pool and keeps
    what is written."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
