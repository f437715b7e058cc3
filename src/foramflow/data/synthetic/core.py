"""A synthetic sediment core: samples down a depth axis with known assemblages.

The relative abundance of each class follows a smooth glacial/interglacial-like climate
curve (slow cooling, fast warming, plus a faster cycle), as species proportions do in a real
core: warm-water morphotypes rise in interglacials, others in glacials, fragments with
dissolution. Each sample holds particles drawn from its true assemblage, written either as
crops ready to classify or as tray images to segment; "human counts" are independent
300-specimen draws from the same truth, as a micropalaeontologist's count would be.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from foramflow.data.synthetic.files import save_png
from foramflow.data.synthetic.particles import CROP_MARGIN, add_sensor_noise, render_particle
from foramflow.data.synthetic.shapes import MORPHOTYPES
from foramflow.data.synthetic.slides import PIXEL_SIZE_UM, draw_scene
from foramflow.data.synthetic.training import check_classes
from foramflow.errors import InvalidInput

SAMPLES_DIR = "samples"
TRUTH_ABUNDANCE_FILE = "truth_abundance.csv"
HUMAN_COUNTS_FILE = "human_counts.csv"
TRUTH_PARTICLES_FILE = "truth_particles.csv"

# Log-abundance of each class at a neutral climate, and its response to warming.
_BASE = dict(zip(MORPHOTYPES, [1.0, 0.6, 0.3, -0.4, -0.3, 0.2, -1.6], strict=True))
_WARMTH = dict(zip(MORPHOTYPES, [0.9, -1.0, -0.6, 0.3, 1.1, -0.7, 0.0], strict=True))

PARTICLES_PER_SLIDE = 60


class CoreTruth(NamedTuple):
    """What was written: true proportions, human counts and one row per particle."""

    abundance: pd.DataFrame
    human_counts: pd.DataFrame
    particles: pd.DataFrame


def climate_index(depth_m: np.ndarray, *, cycle_m: float = 4.0) -> np.ndarray:
    """A smooth glacial/interglacial-like index in [-1, 1] (1 = warm) down a core.

    A sawtooth (slow cooling, abrupt warming; the deeper end is older) smoothed to its first
    three harmonics, plus a weaker cycle 2.4 times faster.
    """
    phase = 2 * np.pi * np.asarray(depth_m, float) / cycle_m
    sawtooth = sum(np.sin(k * phase) / k for k in (1, 2, 3))
    index = sawtooth + 0.4 * np.sin(2.4 * phase + 1.0)
    return index / 1.9


def true_abundance(depth_m: Sequence[float], classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Relative abundance (rows sum to 1) of each class at each depth, from the climate index."""
    classes = check_classes(classes)
    climate = climate_index(np.asarray(depth_m, float))[:, None]
    logits = np.array([_BASE[c] for c in classes]) + np.array([_WARMTH[c] for c in classes]) * (
        climate
    )
    weights = np.exp(logits)
    return pd.DataFrame(weights / weights.sum(axis=1, keepdims=True), columns=classes)


def make_core(
    out_dir: str | Path,
    *,
    n_samples: int = 12,
    particles_per_sample: int = 100,
    depths_m: Sequence[float] | None = None,
    classes: Sequence[str] | None = None,
    as_slides: bool = False,
    image_size: int = 128,
    pixel_size_um: float = PIXEL_SIZE_UM,
    human_count: int = 300,
    colour: bool = False,
    seed: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> CoreTruth:
    """Write a core of ``n_samples`` samples into ``out_dir``.

    Layout::

        out_dir/samples/<sample>/       crops <sample>_NNNN.png (as_slides=False)
                                        or tray images slide_NN.png (as_slides=True)
        out_dir/truth_abundance.csv     sample, depth_m, one column per class (proportions)
        out_dir/human_counts.csv        sample, depth_m, one column per class (counts)
        out_dir/truth_particles.csv     sample, depth_m, file (relative to out_dir), class;
                                        for slides also id, x, y, radius_px, radius_um, area_px

    Parameters
    ----------
    depths_m
        Sample depths (m); by default ``n_samples`` evenly spaced over 0.1–9.9 m.
    as_slides
        Write tray images (at most 60 particles each, ``pixel_size_um`` resolution) to be
        segmented, instead of crops of ``image_size`` pixels.
    human_count
        Specimens in each simulated human count.
    seed
        Sample ``i`` depends only on (seed, i).
    on_progress
        Called with the number of particles written after each crop or slide.
    """
    classes = check_classes(classes)
    if particles_per_sample < 1:
        raise InvalidInput(f"particles_per_sample must be at least 1, got {particles_per_sample}")
    if depths_m is None:
        depths_m = np.linspace(0.1, 9.9, n_samples)
    depths_m = np.asarray(depths_m, float)
    width = len(str(len(depths_m)))
    samples = [f"S{i + 1:0{width}d}" for i in range(len(depths_m))]
    out_dir = Path(out_dir)
    abundance = true_abundance(depths_m, classes)
    human = np.zeros((len(samples), len(classes)), int)
    particles = []
    for i, (sample, depth) in enumerate(zip(samples, depths_m, strict=True)):
        rng = np.random.default_rng([seed, i])
        truth = abundance.to_numpy()[i]
        human[i] = rng.multinomial(human_count, truth)
        names = [str(c) for c in rng.choice(classes, size=particles_per_sample, p=truth)]
        folder = out_dir / SAMPLES_DIR / sample
        folder.mkdir(parents=True, exist_ok=True)
        if as_slides:
            table = _write_slides(folder, names, pixel_size_um, colour, rng, on_progress)
        else:
            table = _write_crops(folder, names, image_size, colour, rng, on_progress)
        table["file"] = [f"{SAMPLES_DIR}/{sample}/{f}" for f in table["file"]]
        table.insert(0, "depth_m", depth)
        table.insert(0, "sample", sample)
        particles.append(table)

    def with_sample(frame: pd.DataFrame) -> pd.DataFrame:
        frame.insert(0, "depth_m", depths_m)
        frame.insert(0, "sample", samples)
        return frame

    abundance = with_sample(abundance)
    human_counts = with_sample(pd.DataFrame(human, columns=classes))
    particle_table = pd.concat(particles, ignore_index=True)
    abundance.to_csv(out_dir / TRUTH_ABUNDANCE_FILE, index=False)
    human_counts.to_csv(out_dir / HUMAN_COUNTS_FILE, index=False)
    particle_table.to_csv(out_dir / TRUTH_PARTICLES_FILE, index=False)
    return CoreTruth(abundance, human_counts, particle_table)


def _write_crops(folder, names, image_size, colour, rng, on_progress) -> pd.DataFrame:
    size_px = image_size / (CROP_MARGIN / 2)
    files = []
    for k, name in enumerate(names, start=1):
        image, _ = render_particle(name, size_px=size_px, rng=rng, colour=colour)
        files.append(f"{folder.name}_{k:04d}.png")
        save_png(folder / files[-1], image)
        if on_progress is not None:
            on_progress(1)
    return pd.DataFrame({"file": files, "class": names})


def _write_slides(folder, names, pixel_size_um, colour, rng, on_progress) -> pd.DataFrame:
    n_slides = max(1, int(np.ceil(len(names) / PARTICLES_PER_SLIDE)))
    tables = []
    for k, group in enumerate(np.array_split(np.array(names, dtype=object), n_slides), start=1):
        scene = draw_scene(
            list(group), shape=None, pixel_size_um=pixel_size_um, colour=colour, rng=rng
        )
        file = f"slide_{k:02d}.png"
        save_png(folder / file, add_sensor_noise(scene.clean, rng))
        tables.append(scene.truth.assign(file=file))
        if on_progress is not None:
            on_progress(len(group))
    table = pd.concat(tables, ignore_index=True)
    return table[["file", "class", *table.columns.drop(["file", "class"])]]
