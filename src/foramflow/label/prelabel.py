"""Pre-labelling: run a model bundle over the project and store its suggestions.

Every image is classified, validated ones included, so that the disagreements between
experts and model can be listed (:meth:`LabelStore.disagreements`). The bundle runs as in
``foramflow predict``: the engine classify runs, in fp32.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from foramflow.bundle.engine import Engine
from foramflow.bundle.folder import Bundle
from foramflow.bundle.predict import predict_paths
from foramflow.label.store import InvalidName, LabelStore, class_name


def prelabel(
    store: LabelStore,
    bundle_path: str | Path,
    *,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, list[str]]:
    """Predict every image with the bundle; return (images predicted, unreadable-image notes).

    Each image keeps the top class, its probability and the margin to the second class
    (small margin = uncertain, which "label next" uses).
    """
    bundle = Bundle.load(bundle_path)
    model = str(bundle.meta.name or Path(bundle_path).resolve().name)
    labels = _class_names(bundle)
    engine = Engine(bundle, precision="fp32")
    paths = store.image_paths()
    ids, files = list(paths), list(paths.values())
    problems, pending, done = [], [], 0
    for image_id, (path, probs, error) in zip(
        ids, predict_paths(engine, files, batch_size=batch_size), strict=True
    ):
        done += 1
        if probs is None:
            problems.append(f"{path}: {error}")
        else:
            top2 = np.argsort(probs)[::-1][:2]
            score = float(probs[top2[0]])
            margin = score - (float(probs[top2[1]]) if len(top2) > 1 else 0.0)
            pending.append((image_id, labels[top2[0]], score, margin))
        if len(pending) >= 1024 or done == len(ids):
            store.set_predictions(pending, model=model)
            pending = []
        if progress:
            progress(done, len(ids))
    return done - len(problems), problems


def _class_names(bundle: Bundle) -> list[str]:
    """The bundle's labels, every one checked to be a class name before any is stored."""
    try:
        return [class_name(label) for label in bundle.labels]
    except InvalidName as err:
        raise InvalidName(f"{bundle.meta_location}: {err}") from None
