"""A labelled training set of synthetic particle crops, one folder per class."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from foramflow.data.synthetic.files import save_png
from foramflow.data.synthetic.particles import CROP_MARGIN, render_particle
from foramflow.data.synthetic.shapes import MORPHOTYPES
from foramflow.errors import InvalidInput

TRUTH_FILE = "truth.csv"


def check_classes(classes: Sequence[str] | None) -> list[str]:
    """The requested class names (all morphotypes by default), each a known morphotype."""
    classes = list(MORPHOTYPES if classes is None else classes)
    unknown = sorted(set(classes) - set(MORPHOTYPES))
    if unknown:
        raise InvalidInput(f"unknown classes {unknown}; expected some of {list(MORPHOTYPES)}")
    if not classes or len(set(classes)) != len(classes):
        raise InvalidInput(f"classes must be distinct and not empty, got {classes}")
    return classes


def write_training_set(
    out_dir: str | Path,
    *,
    n_per_class: int,
    classes: Sequence[str] | None = None,
    image_size: int = 128,
    colour: bool = False,
    seed: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Write ``n_per_class`` crops per class into ``out_dir/<class>/`` as 8-bit PNG.

    Each crop is ``image_size`` pixels square with the particle centred and 2.2 radii across,
    as the segmenter crops. Image ``i`` of class ``c`` depends only on (seed, c, i), so a set
    made with more images or more classes contains the smaller one. The truth table is also
    written to ``out_dir/truth.csv``.

    Returns
    -------
    DataFrame with ``path`` (relative to ``out_dir``), ``class`` and ``index``.
    ``on_progress(n)`` is called after every ``n`` images written.
    """
    classes = check_classes(classes)
    if n_per_class < 1:
        raise InvalidInput(f"n_per_class must be at least 1, got {n_per_class}")
    out_dir = Path(out_dir)
    size_px = image_size / (CROP_MARGIN / 2)
    rows = []
    for name in classes:
        class_index = MORPHOTYPES.index(name)
        (out_dir / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            rng = np.random.default_rng([seed, class_index, i])
            image, _ = render_particle(name, size_px=size_px, rng=rng, colour=colour)
            path = f"{name}/{name}_{i:05d}.png"
            save_png(out_dir / path, image)
            rows.append((path, name, i))
            if on_progress is not None:
                on_progress(1)
    truth = pd.DataFrame(rows, columns=["path", "class", "index"])
    truth.to_csv(out_dir / TRUTH_FILE, index=False)
    return truth
