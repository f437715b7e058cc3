"""Abundances on real images with a known truth: cores built from labelled images a bundle
never saw, classified and corrected exactly as a user runs ``foramflow``.

1. Split a folder-per-class set (default ``ndsb_plankton_dev``): a seeded share of every
   class (``--pool-fraction``) is held out as the *pool* the cores are drawn from; the rest is
   the training set. Unless ``--bundle`` is given, ``foramflow train`` (defaults, no flags)
   trains on it, so the bundle's validation split, confusion matrix and calibration never
   see a pool image.
2. Each core: ``--samples`` samples down a core of the pool's ``--taxa`` largest classes
   (the most distinct images to draw from), whose true proportions follow smooth, seeded
   signals (one peak, a trend, a cycle) unlike the training set's prior; ``--absent`` taxa
   are absent from the upper half. A sample is ``--images`` images drawn from its true
   proportions (each image once per sample, unless a class runs short: then said); a human
   count is ``--human`` specimens drawn from the same proportions (a human counts other
   specimens of the same sediment).
3. ``foramflow classify CORE --out …`` then ``foramflow abundance …`` with the human counts,
   the commands a user types. Every estimate is compared with the true proportions:
   mean and max absolute error (percentage points), coverage of the 95 % intervals, and the
   share given to absent taxa where they are absent. ``--repeats`` cores give the coverage
   enough intervals to be read to a couple of points.

Usage:
    python benchmarks/bench_abundance_real.py                     # train, then 3 cores
    python benchmarks/bench_abundance_real.py --min-per-class 40   # classes of 40 images or more
    python benchmarks/bench_abundance_real.py --bundle runs/x/bundle --repeats 5
    python benchmarks/bench_abundance_real.py --data my_forams/ --taxa 6 --images 800

Writes benchmarks/results/abundance_real/ (work folders, tables, the Fig. 9-style figure).
Run it alone: it trains and classifies on every core of a small machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "abundance_real"
#: An interval counts as covering a true zero when its lower end is within this of it.
COVER_TOLERANCE = 1e-4
METHODS = {
    "raw": "classify and count",
    "acc": "adjusted count (ACC)",
    "em": "EM prior",
    "human": "human count",
}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


def default_data() -> Path:
    root = Path(os.environ.get("FORAMFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
    return root / "ndsb_plankton_dev"


def foramflow(*args: str) -> None:
    """Run one ``foramflow`` command as a user would, failing loudly."""
    command = [str(Path(sys.executable).with_name("foramflow")), *args]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def split_pool(source: Path, work: Path, fraction: float, seed: int) -> dict[str, list[Path]]:
    """Link ``1 - fraction`` of every class into ``work/train``; return the held-out rest.

    The split is a pure function of the file names and the seed: a rerun reuses the
    training folder (and a trained bundle) made before.
    """
    rng = random.Random(seed)
    train = work / "train"
    pool: dict[str, list[Path]] = {}
    fresh = not train.exists()
    for directory in sorted(d for d in source.iterdir() if d.is_dir()):
        images = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        rng.shuffle(images)
        held = round(fraction * len(images))
        pool[directory.name] = images[:held]
        if fresh:
            (train / directory.name).mkdir(parents=True)
            for image in images[held:]:
                (train / directory.name / image.name).symlink_to(image.resolve())
    return pool


def train_bundle(work: Path, min_per_class: int | None) -> Path:
    """The bundle ``foramflow train`` makes from the training folder with its defaults
    (and the class minimum given)."""
    options = ["--min-per-class", str(min_per_class)] if min_per_class else []
    run = work / ("run" if not min_per_class else f"run_min{min_per_class}")
    bundle = run / "bundle"
    if not (bundle / "model.json").is_file():
        if run.exists():
            shutil.rmtree(run)
        started = time.perf_counter()
        foramflow("train", str(work / "train"), "--out", str(run), *options)
        print(f"training wall time: {(time.perf_counter() - started) / 60:.1f} min")
    return bundle


@dataclass
class Core:
    """A drawn core: its folder of images, its truth and the human counts of it."""

    images: Path
    truth: pd.DataFrame  # sample, taxon, fraction (the sediment's true proportions)
    human: Path  # CSV: sample, depth_cm, one column of counts per taxon
    absent: pd.DataFrame  # sample, taxon: where a taxon of the core is absent
    reused: int  # images drawn again within a sample because a pool class ran short


def true_proportions(depth: np.ndarray, n_taxa: int, absent: int, rng) -> np.ndarray:
    """Smooth, seeded signals (samples × taxa): peaks, trends and cycles down the core;
    the first ``absent`` taxa are absent from the upper half."""
    x = (depth - depth.min()) / np.ptp(depth)
    columns = []
    for j in range(n_taxa):
        level = rng.normal(0.0, 0.5)
        shape = j % 3
        if shape == 0:
            centre = rng.uniform(0.2, 0.8)
            signal = 1.5 * np.exp(-(((x - centre) / 0.12) ** 2))
        elif shape == 1:
            signal = rng.choice([-1.0, 1.0]) * 1.2 * x
        else:
            signal = 0.7 * np.sin(2 * np.pi * (x + rng.uniform()))
        log_abundance = level + signal
        if j < absent:
            log_abundance = np.where(x < 0.5, -np.inf, log_abundance)
        columns.append(log_abundance)
    log_abundance = np.stack(columns, axis=1)
    weights = np.exp(log_abundance - log_abundance.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def draw_core(pool: dict[str, list[Path]], labels: list[str], folder: Path, args, rng) -> Core:
    """Link a core's images into ``folder/<sample>/`` and write its human counts."""
    by_size = sorted((c for c in labels if pool.get(c)), key=lambda c: (-len(pool[c]), c))
    taxa = by_size[: args.taxa]
    depth = np.linspace(10.0, 10.0 + 50.0 * (args.samples - 1), args.samples)
    truth = true_proportions(depth, args.taxa, args.absent, rng)
    truth_rows, human_rows, absent_rows, reused = [], [], [], 0
    for d, proportions in zip(depth, truth, strict=True):
        sample = f"S{d:04.0f}cm"
        counts = rng.multinomial(args.images, proportions)
        for taxon, count in zip(taxa, counts, strict=True):
            images = pool[taxon]
            picks = rng.permutation(len(images))[:count]  # each image once …
            extra = max(0, count - len(images))  # … unless the class runs short
            picks = np.concatenate([picks, rng.choice(len(images), size=extra)]).astype(int)
            reused += extra
            for k, index in enumerate(picks):
                link = folder / sample / f"{taxon}__{k:04d}{images[index].suffix}"
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(images[index].resolve())
        truth_rows += [
            {"sample": sample, "taxon": t, "fraction": f}
            for t, f in zip(taxa, proportions, strict=True)
        ]
        absent_rows += [{"sample": sample, "taxon": t} for t, f in zip(taxa, proportions) if f == 0]
        human = rng.multinomial(args.human, proportions)
        human_rows.append({"sample": sample, "depth_cm": d, **dict(zip(taxa, human))})
    human_path = folder.parent / f"{folder.name}_human_counts.csv"
    pd.DataFrame(human_rows).to_csv(human_path, index=False)
    return Core(folder, pd.DataFrame(truth_rows), human_path, pd.DataFrame(absent_rows), reused)


def score(estimates: pd.DataFrame, core: Core) -> pd.DataFrame:
    """Per estimate: errors against the truth over the core's taxa, coverage of the
    intervals, and the share given to absent taxa (where a core taxon is absent, and
    classes never in the core)."""
    rows = []
    taxa = set(core.truth["taxon"])
    for method, table in estimates.groupby("method", sort=False):
        merged = table.merge(core.truth, on=["sample", "taxon"], suffixes=("", "_true"))
        error = 100 * (merged["fraction"] - merged["fraction_true"]).abs()
        covered = (merged["low"] <= merged["fraction_true"] + COVER_TOLERANCE) & (
            merged["fraction_true"] <= merged["high"] + COVER_TOLERANCE
        )
        absent = table.merge(core.absent, on=["sample", "taxon"])
        outside = table[~table["taxon"].isin(taxa)].groupby("sample")["fraction"].sum()
        rows.append(
            {
                "method": method,
                "mean_abs_error_pp": error.mean(),
                "max_abs_error_pp": error.max(),
                "coverage_95": covered.mean(),
                "intervals": len(merged),
                "mean_width_pp": 100 * (merged["high"] - merged["low"]).mean(),
                "absent_taxon_pp": 100 * absent["fraction"].mean() if len(absent) else np.nan,
                "outside_core_pp": 100 * outside.mean() if len(outside) else 0.0,
            }
        )
    return pd.DataFrame(rows)


def run_core(bundle: Path, core: Core, out: Path, bootstrap: int) -> pd.DataFrame:
    """``foramflow classify`` and ``foramflow abundance`` on one core; its score table."""
    results, abundance = out / f"{core.images.name}_results", out / f"{core.images.name}_abundance"
    regex = r"(?P<sample>S(?P<depth>\d+)cm)"
    foramflow(
        "classify", str(bundle), str(core.images), "--out", str(results),
        "--sample-regex", regex,
    )  # fmt: skip
    foramflow(
        "abundance", str(results), "--out", str(abundance), "--human", str(core.human),
        "--bootstrap", str(bootstrap), "--depth-unit", "cm",
    )  # fmt: skip
    estimates = pd.read_csv(abundance / "abundance.csv")
    human = pd.read_csv(abundance / "human_abundance.csv").assign(method="human")
    predictions = pd.read_parquet(results / "predictions.parquet")
    unsure = (predictions["status"] == "unsure").mean()
    table = score(pd.concat([estimates, human], ignore_index=True), core)
    table["unsure_share"] = unsure
    return table


def figure(bundle: Path, core: Core, cores_dir: Path, out: Path) -> Path:
    """The Fig. 9-style figure of one core with its truth drawn in: a panel per taxon of the
    core, and one for every other class of the bundle together (truly absent)."""
    from foramflow.abundance.groups import Grouping
    from foramflow.abundance.plots import plot_downcore, save_figure
    from foramflow.abundance.steps import estimate_abundance

    labels = json.loads((bundle / "model.json").read_text())["labels"]
    others = [c for c in labels if c not in set(core.truth["taxon"])]
    result = estimate_abundance(
        cores_dir / f"{core.images.name}_results",
        cores_dir / "figure_abundance",
        groups=Grouping(groups={"classes not in the core": others}),
        human=core.human,
        bundle=bundle,
        bootstrap=200,
        depth_unit="cm",
    )
    path = out / "downcore_with_truth.png"
    save_figure(
        plot_downcore(result.analysis, truth=core.truth, title="Real images, known truth"), path
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--bundle", type=Path, help="a bundle that never saw the pool")
    parser.add_argument("--pool-fraction", type=float, default=0.3)
    parser.add_argument(
        "--min-per-class", type=int, help="train's class minimum (default: train's own choice)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--images", type=int, default=600, help="images per sample")
    parser.add_argument("--taxa", type=int, default=10)
    parser.add_argument("--absent", type=int, default=1, help="taxa absent in the upper half")
    parser.add_argument("--human", type=int, default=300, help="specimens per human count")
    parser.add_argument("--repeats", type=int, default=3, help="cores drawn")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--train-only", action="store_true")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data}: no such folder (set FORAMFLOW_SHARED_DATA or --data)")
    work = args.out / "work"
    pool = split_pool(args.data, work, args.pool_fraction, args.seed)
    bundle = args.bundle or train_bundle(work, args.min_per_class)
    print(f"bundle: {bundle}; pool: {sum(map(len, pool.values()))} images")
    if args.train_only:
        return
    labels = json.loads((bundle / "model.json").read_text())["labels"]
    rng = np.random.default_rng(args.seed)
    cores_dir = args.out / "cores"
    if cores_dir.exists():
        shutil.rmtree(cores_dir)
    tables = []
    for repeat in range(args.repeats):
        core = draw_core(pool, labels, cores_dir / f"core{repeat}", args, rng)
        if core.reused:
            print(f"core {repeat}: {core.reused} images drawn twice within a sample")
        table = run_core(bundle, core, cores_dir, args.bootstrap)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"), flush=True)
        tables.append(table.assign(core=repeat))
    path = figure(bundle, core, cores_dir, args.out)
    summary = summarise(pd.concat(tables, ignore_index=True))
    summary.to_csv(args.out / "errors_vs_truth.csv", index=False)
    print(
        f"\n{args.repeats} cores × {args.samples} samples × {args.images} images of "
        f"{args.taxa} taxa ({args.absent} absent in the upper half); human counts of "
        f"{args.human}; bundle {bundle} (top-1 {bundle_accuracy(bundle):.3f})"
    )
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"figure: {path}")


def summarise(tables: pd.DataFrame) -> pd.DataFrame:
    """Mean over cores, coverage weighted by the intervals each core gave."""
    rows = []
    for method, table in tables.groupby("method", sort=False):
        rows.append(
            {
                "estimate": METHODS.get(method, method),
                "mean_abs_error_pp": table["mean_abs_error_pp"].mean(),
                "max_abs_error_pp": table["max_abs_error_pp"].max(),
                "coverage_95": np.average(table["coverage_95"], weights=table["intervals"]),
                "mean_width_pp": table["mean_width_pp"].mean(),
                "absent_taxon_pp": table["absent_taxon_pp"].mean(),
                "outside_core_pp": table["outside_core_pp"].mean(),
            }
        )
    return pd.DataFrame(rows)


def bundle_accuracy(bundle: Path) -> float:
    meta = json.loads((bundle / "model.json").read_text())
    return float(meta.get("metrics", {}).get("accuracy", float("nan")))


if __name__ == "__main__":
    main()
