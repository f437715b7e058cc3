"""Synthetic particles beside real ones, and how fast the generator is.

Writes benchmarks/results/contact_sheet.png: the 7 real MISO example images (256×256 grey on
black, from ../shared/data/miso_examples, skipped when absent) on the left, 30 synthetic
particles rendered the same way on the right, with class names. Then times the generator:
one 128-pixel crop per morphotype, a 2 000-crop training set written to disk, and a core of
tray slides, printing medians.

    .venv/bin/python benchmarks/contact_sheet.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from foramflow.data.synthetic import MORPHOTYPES, make_core, render_particle, write_training_set

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TILE = 256


def real_examples() -> list[tuple[str, np.ndarray]]:
    shared = Path(os.environ.get("FORAMFLOW_SHARED_DATA", ROOT.parent / "shared" / "data"))
    folder = shared / "miso_examples"
    if not folder.is_dir():
        print(f"real examples not found at {folder}: sheet shows synthetic particles only")
        return []
    return [
        (path.parent.name, np.asarray(Image.open(path).convert("L").resize((TILE, TILE))))
        for path in sorted(folder.glob("*/*.png"))
    ]


def synthetic_examples(n: int, seed: int) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    tiles = []
    for i in range(n):
        morphotype = MORPHOTYPES[i % len(MORPHOTYPES)]
        image, _ = render_particle(morphotype, size_px=TILE / 1.1, rng=rng)
        tiles.append((morphotype, np.round(image * 255).astype(np.uint8)))
    return tiles


def sheet(real, synthetic, columns: int = 6) -> Image.Image:
    gap = 8
    real_cols = 2 if real else 0
    rows = max(int(np.ceil(len(synthetic) / columns)), int(np.ceil(len(real) / 2)))
    width = (real_cols + columns) * (TILE + gap) + (3 * gap if real else 0)
    canvas = Image.new("L", (width, rows * (TILE + gap) + 30), 255)
    draw = ImageDraw.Draw(canvas)
    if real:
        draw.text((gap, 8), "real (MISO examples)", fill=0)
    draw.text((real_cols * (TILE + gap) + 3 * gap * bool(real), 8), "synthetic", fill=0)

    def paste(tiles, first_col, n_cols):
        for k, (name, pixels) in enumerate(tiles):
            x = (first_col + k % n_cols) * (TILE + gap) + (3 * gap if first_col else 0)
            y = 30 + (k // n_cols) * (TILE + gap)
            canvas.paste(Image.fromarray(pixels), (x, y))
            draw.text((x + 4, y + 4), name, fill=255)

    paste(real, 0, 2)
    paste(synthetic, real_cols, columns)
    return canvas


def median_seconds(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "contact_sheet.png"
    sheet(real_examples(), synthetic_examples(30, seed=2020)).save(out)
    print(f"wrote {out.relative_to(ROOT)}")

    rng = np.random.default_rng(0)
    print("one 128-pixel crop (render only), median of 50, ms:")
    for morphotype in MORPHOTYPES:
        seconds = []
        for _ in range(50):
            start = time.perf_counter()
            render_particle(morphotype, size_px=128 / 1.1, rng=rng)
            seconds.append(time.perf_counter() - start)
        print(f"  {morphotype:13s} {1e3 * np.median(seconds):6.2f}")

    with tempfile.TemporaryDirectory() as tmp:
        n_per_class = 2000 // len(MORPHOTYPES) + 1
        total = n_per_class * len(MORPHOTYPES)
        seconds = median_seconds(
            lambda: write_training_set(Path(tmp) / "train", n_per_class=n_per_class, seed=1),
            args.repeats,
        )
        print(
            f"training set, {total} crops of 128 px written as PNG: {seconds:.2f} s "
            f"({1e3 * seconds / total:.2f} ms per crop, median of {args.repeats})"
        )
        seconds = median_seconds(
            lambda: make_core(Path(tmp) / "core", n_samples=12, particles_per_sample=100),
            args.repeats,
        )
        print(f"core, 12 samples × 100 crops: {seconds:.2f} s (median of {args.repeats})")
        seconds = median_seconds(
            lambda: make_core(
                Path(tmp) / "slides", n_samples=12, particles_per_sample=100, as_slides=True
            ),
            args.repeats,
        )
        print(
            f"core, 12 samples × 100 particles on slides: {seconds:.2f} s "
            f"(median of {args.repeats})"
        )


if __name__ == "__main__":
    main()
