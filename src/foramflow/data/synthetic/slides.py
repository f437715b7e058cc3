"""Slides: many particles scattered on a dark tray, with their positions, sizes and classes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from foramflow.data.synthetic.files import save_labels, save_png
from foramflow.data.synthetic.particles import (
    Lighting,
    add_sensor_noise,
    composite,
    draw_particle,
    optical_blur,
    tray_background,
)
from foramflow.data.synthetic.shapes import make_particle
from foramflow.data.synthetic.training import check_classes
from foramflow.errors import InvalidInput

DIAMETER_UM = {
    "trochospiral": 320.0,
    "planispiral": 300.0,
    "biserial": 350.0,
    "uniserial": 380.0,
    "spherical": 450.0,
    "fragment": 200.0,
    "double": 480.0,
}
"""Median particle diameter per class (µm); each particle's is drawn log-normally around it."""

DIAMETER_SPREAD = 0.25
"""Standard deviation of the log diameter."""

PIXEL_SIZE_UM = 5.0
"""Default tray camera resolution (µm per pixel): a 300 µm test is 60 pixels across."""

COVERAGE = 0.12
"""Share of the tray the particles' discs cover when the tray size is left to choose."""

TRUTH_COLUMNS = ["id", "class", "x", "y", "radius_px", "radius_um", "area_px"]


class Slide(NamedTuple):
    """A tray image, its particle table and its label image (0 = tray, particle ``id`` else)."""

    image: np.ndarray
    truth: pd.DataFrame
    labels: np.ndarray


class _Scene(NamedTuple):
    clean: np.ndarray  # composited, blurred by the optics, no sensor noise
    height_um: np.ndarray
    truth: pd.DataFrame
    labels: np.ndarray


def make_slide(
    *,
    n_particles: int,
    shape: tuple[int, int] | None = None,
    classes: Sequence[str] | None = None,
    proportions: Sequence[float] | None = None,
    pixel_size_um: float = PIXEL_SIZE_UM,
    colour: bool = False,
    seed: int | np.random.Generator = 0,
) -> Slide:
    """Scatter ``n_particles`` particles on a tray, none touching another.

    Parameters
    ----------
    n_particles
        How many particles.
    shape
        (height, width) of the tray image in pixels; by default large enough that the
        particles cover about 12 % of it.
    classes, proportions
        Classes to draw from (all :data:`MORPHOTYPES` by default) and their probabilities
        (equal by default).
    pixel_size_um
        Resolution; particle diameters follow :data:`DIAMETER_UM`.
    seed
        An integer or a numpy Generator: the same seed gives the same slide.

    Returns
    -------
    Slide
        ``image`` float32 in [0, 1]; ``truth`` with one row per particle: ``id`` (its value in
        ``labels``), ``class``, centroid ``x``, ``y`` (pixels, column and row), ``radius_px``
        (largest centroid-to-pixel distance, as the segmenter measures it), ``radius_um`` and
        ``area_px``; ``labels`` int32.
    """
    rng = np.random.default_rng(seed)
    classes = check_classes(classes)
    p = None if proportions is None else np.asarray(proportions, float) / np.sum(proportions)
    names = [str(c) for c in rng.choice(classes, size=n_particles, p=p)]
    scene = draw_scene(names, shape=shape, pixel_size_um=pixel_size_um, colour=colour, rng=rng)
    return Slide(add_sensor_noise(scene.clean, rng), scene.truth, scene.labels)


def _place(
    radii: np.ndarray, shape: tuple[int, int], gap: float, rng: np.random.Generator
) -> np.ndarray:
    """Centres (N, 2) as (row, col) for discs of ``radii``, inside the tray, ``gap`` apart."""
    centres = np.zeros((len(radii), 2))
    placed: list[int] = []
    for k in np.argsort(-radii):  # the large ones first, while there is room
        r = radii[k]
        low, high = r + gap, np.array(shape) - r - gap - 1
        if np.any(high <= low):
            raise InvalidInput(f"a particle of radius {r:.0f} px does not fit a {shape} tray")
        for _ in range(50):
            candidates = rng.uniform(low, high, size=(200, 2))
            distance = np.linalg.norm(candidates[:, None] - centres[placed][None], axis=2)
            free = np.all(distance > radii[placed][None] + r + gap, axis=1)
            if free.any():
                centres[k] = candidates[np.argmax(free)]
                placed.append(k)
                break
        else:
            raise InvalidInput(
                f"no room for {len(radii)} particles on a {shape[0]}×{shape[1]} tray; "
                "use a larger tray or fewer particles"
            )
    return centres


def draw_scene(
    names: Sequence[str],
    *,
    shape: tuple[int, int] | None,
    pixel_size_um: float,
    colour: bool,
    rng: np.random.Generator,
) -> _Scene:
    """Render particles of the given classes on one tray, with the truth and the height map."""
    diameters_um = np.array([DIAMETER_UM[n] for n in names]) * np.exp(
        rng.normal(0, DIAMETER_SPREAD, len(names))
    )
    radii = diameters_um / pixel_size_um / 2
    if shape is None:
        side = int(np.ceil(np.sqrt(np.sum(np.pi * radii**2) / COVERAGE) + 2 * radii.max()))
        shape = (side, side)
    gap = max(3.0, 0.1 * float(np.median(radii))) if len(radii) else 0.0
    centres = _place(radii, shape, gap, rng)
    lighting = Lighting.random(rng)
    image = tray_background(shape, rng, colour=colour)
    height = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.int32)
    rows = []
    for k, (name, r, centre) in enumerate(zip(names, radii, centres, strict=True), start=1):
        particle = make_particle(name, rng)
        side = int(np.ceil(2 * r)) + 5
        rendered = draw_particle(
            particle, side=side, radius_px=r, rng=rng, lighting=lighting, colour=colour
        )
        top_left = np.round(centre - (side - 1) / 2).astype(int)
        composite(image, rendered, top_left)
        (r0, c0), (r1, c1) = top_left, top_left + side
        height[r0:r1, c0:c1][rendered.mask] = rendered.height_px[rendered.mask] * pixel_size_um
        labels[r0:r1, c0:c1][rendered.mask] = k
        pixel_rows, pixel_cols = np.nonzero(rendered.mask)
        y, x = pixel_rows.mean() + r0, pixel_cols.mean() + c0
        radius_px = np.hypot(pixel_rows + r0 - y, pixel_cols + c0 - x).max()
        rows.append((k, name, x, y, radius_px, radius_px * pixel_size_um, len(pixel_rows)))
    truth = pd.DataFrame(rows, columns=TRUTH_COLUMNS)
    clean = optical_blur(image, rng.uniform(0.4, 0.8))
    return _Scene(clean, height, truth, labels)


def save_slide(slide: Slide, out_dir: str | Path, *, name: str = "slide") -> list[Path]:
    """Write ``<name>.png``, ``<name>_labels.png`` (16-bit) and ``<name>_truth.csv``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}_labels.png", out_dir / f"{name}_truth.csv"]
    save_png(paths[0], slide.image)
    save_labels(paths[1], slide.labels)
    slide.truth.to_csv(paths[2], index=False)
    return paths
