"""Throughput of the imaging steps on this machine: segmenting a 2000×2000 tray image and
fusing a Z-stack of 31 planes of 640×640.

    .venv/bin/python benchmarks/bench_imaging.py [--repeats 5]

Scenes come from :mod:`foramflow.data.synthetic` (foraminifera-like particles on a dark
tray, 5 µm per pixel). Prints the median wall time of ``repeats`` runs per case.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from foramflow.data.synthetic import make_slide, make_zstack
from foramflow.imaging.save import save_image
from foramflow.imaging.segment import crop_square, segment_image
from foramflow.imaging.stack import fuse_stack


def median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def write_crops(image: np.ndarray, result: dict, folder: Path) -> None:
    for row in result["particles"].itertuples():
        crop = crop_square(
            image,
            row.crop_top_px,
            row.crop_left_px,
            row.crop_side_px,
            fill=result["background_colour"],
        )
        save_image(folder / f"p{row.label:04d}.png", crop)


def bench_segment(repeats: int) -> None:
    for colour in (False, True):
        slide = make_slide(n_particles=150, shape=(2000, 2000), colour=colour, seed=0)
        result = segment_image(slide.image, pixels_per_mm=200.0)
        seconds = median_seconds(
            lambda image=slide.image: segment_image(image, pixels_per_mm=200.0), repeats
        )
        with tempfile.TemporaryDirectory() as folder:
            writing = median_seconds(
                lambda r=result, i=slide.image: write_crops(i, r, Path(folder)), repeats
            )
        kind = "RGB " if colour else "grey"
        print(
            f"segment 2000×2000 {kind}: {seconds:.2f} s per image "
            f"({len(result['particles'])} particles of {len(slide.truth)} placed); "
            f"writing their PNG crops {writing:.2f} s"
        )


def bench_stack(repeats: int) -> None:
    for colour in (False, True):
        stack = make_zstack(
            n_particles=6,
            shape=(640, 640),
            n_planes=31,
            plane_spacing_um=20.0,
            colour=colour,
            seed=0,
        )
        kind = "RGB " if colour else "grey"
        for align in (True, False):
            seconds = median_seconds(
                lambda p=stack.planes, a=align: fuse_stack(p, align=a), repeats
            )
            print(
                f"stack 31 × 640×640 {kind} align={align!s:<5}: {seconds:.2f} s per stack "
                f"({31 / seconds:.1f} planes/s)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"median of {args.repeats} runs")
    bench_segment(args.repeats)
    bench_stack(args.repeats)


if __name__ == "__main__":
    main()
