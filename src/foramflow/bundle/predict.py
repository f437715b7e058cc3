"""The one prediction path: decode, preprocess, run the engine.

``classify`` runs the same two steps, :func:`~foramflow.bundle.decode.decode_batch` and
:meth:`Engine.predict <foramflow.bundle.engine.Engine.predict>`, spread over worker
processes or a cluster; ``predict``, ``evaluate``, ``calibrate`` and the labelling app's
pre-labelling run them here. An image that cannot be read is one error for that image, never
the end of the run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from foramflow.bundle.decode import decode_batch
from foramflow.bundle.engine import Engine

DEFAULT_BATCH_SIZE = 64  # classify's


class Prediction(NamedTuple):
    """One image's class probabilities, or why it could not be read."""

    path: Path
    probabilities: np.ndarray | None
    error: str | None


def predict_paths(
    engine: Engine, paths: Sequence[str | Path], *, batch_size: int = DEFAULT_BATCH_SIZE
) -> Iterator[Prediction]:
    """Yield a :class:`Prediction` for each path, in order."""
    spec = engine.bundle.spec
    for start in range(0, len(paths), batch_size):
        chunk = [Path(p) for p in paths[start : start + batch_size]]
        batch, errors = decode_batch(chunk, spec)
        probabilities = iter(engine.predict(batch))
        for path, error in zip(chunk, errors, strict=True):
            yield Prediction(path, None if error else next(probabilities), error)


@dataclass(frozen=True)
class TimedPredictions:
    """Probabilities of a set of preprocessed images, and how long the engine took."""

    probabilities: np.ndarray
    ms_per_image: float
    batch_size: int
    engine: str  # what ran the network, as reports say it


def predict_timed(
    engine: Engine, images: np.ndarray, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> TimedPredictions:
    """Run ``engine`` over preprocessed ``images`` (N, C, S, S) in batches of ``batch_size``,
    timing it after one warm-up batch: the inference time a classify run sees."""
    engine.predict(np.asarray(images[:batch_size], dtype=np.float32))
    start = time.perf_counter()
    parts = [
        engine.predict(np.asarray(images[i : i + batch_size], dtype=np.float32))
        for i in range(0, len(images), batch_size)
    ]
    elapsed = time.perf_counter() - start
    probabilities = (
        np.concatenate(parts) if parts else np.empty((0, len(engine.bundle.labels)), np.float32)
    )
    return TimedPredictions(
        probabilities=probabilities,
        ms_per_image=1000.0 * elapsed / max(1, len(images)),
        batch_size=batch_size,
        engine=engine.describe(),
    )
