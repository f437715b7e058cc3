"""Training's speed on a computer doing other work: `foramflow train DIR` quiet, and with one
busy process (`while True: pass`, same priority) on one of the cores, once with OpenMP's
threads spinning while they wait (OMP_WAIT_POLICY=ACTIVE) and once waiting passively
(PASSIVE, foramflow's default).

    python benchmarks/bench_busy.py DIR [--classes 20 --per-class 50] [--save NAME]

DIR is a folder per class (e.g. ../shared/data/ndsb_plankton_dev); the run trains on
``--per-class`` images of the ``--classes`` largest classes, with the default recipe. Prints
per run the wall time, the frozen bottom's images/s and the median epoch images/s, and each
busy run's share of the quiet run's speed at the same setting.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from saved_results import save_result

FORAMFLOW = (sys.executable, "-c", "from foramflow.cli import app; app()")


def spin() -> None:
    while True:
        pass


def subset(source: Path, out: Path, classes: int, per_class: int) -> Path:
    folders = sorted((d for d in source.iterdir() if d.is_dir()), key=lambda d: d.name)
    folders = sorted(folders, key=lambda d: -sum(1 for _ in d.iterdir()))[:classes]
    for folder in folders:
        (out / folder.name).mkdir(parents=True)
        for image in sorted(folder.iterdir())[:per_class]:
            shutil.copy(image, out / folder.name / image.name)
    return out


def train(images: Path, work: Path, name: str, policy: str, busy: bool) -> dict:
    env = {**os.environ, "OMP_WAIT_POLICY": policy}
    spinner = multiprocessing.Process(target=spin, daemon=True) if busy else None
    if spinner:
        spinner.start()
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [
                *FORAMFLOW,
                "train",
                str(images),
                "--out",
                str(work / name),
                "--feature-cache",
                str(work / f"cache_{name}"),
            ],
            env=env,
            capture_output=True,
            text=True,
        )
    finally:
        if spinner:
            spinner.terminate()
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{name}: foramflow train failed\n{done.stderr[-2000:]}")
    log = done.stdout + done.stderr
    epochs = [float(x) for x in re.findall(r"epoch \d+:.*?([\d.]+) images/s", log)]
    bottom = re.search(r"Bottom rows:.*?\(([\d.]+) images/s\)", log)
    return {
        "wall": wall,
        "bottom": float(bottom.group(1)) if bottom else float("nan"),
        "epoch": statistics.median(epochs) if epochs else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path, help="a folder per class")
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--save", metavar="NAME", help="also write benchmarks/results/NAME.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-busy-") as tmp:
        work = Path(tmp)
        images = subset(args.images, work / "images", args.classes, args.per_class)
        runs = {}
        for policy in ("ACTIVE", "PASSIVE"):
            for busy in (False, True):
                name = f"{policy.lower()}_{'busy' if busy else 'quiet'}"
                runs[policy, busy] = train(images, work, name, policy, busy)
                print(name, {k: round(v, 1) for k, v in runs[policy, busy].items()}, flush=True)
    rows = []
    for (policy, busy), run in runs.items():
        quiet = runs[policy, False]
        rows.append(
            [
                f"OMP_WAIT_POLICY={policy}",
                "one core busy" if busy else "quiet",
                round(run["wall"], 1),
                round(run["bottom"]),
                round(run["epoch"]),
                f"{quiet['wall'] / run['wall']:.0%}" if busy else "",
            ]
        )
    for row in rows:
        print(" | ".join(map(str, row)))
    if args.save:
        path = save_result(
            args.save,
            title=f"`foramflow train` on {args.classes} classes × {args.per_class} images, "
            "quiet and beside a busy process",
            columns=[
                "OpenMP",
                "machine",
                "wall s",
                "bottom images/s",
                "epoch images/s",
                "speed kept (quiet wall / busy wall)",
            ],
            rows=rows,
            notes="The busy process is a Python `while True: pass` at the same priority. "
            "Epoch images/s is the median over the run's epochs.",
        )
        print(f"saved: {path}")


if __name__ == "__main__":
    main()
