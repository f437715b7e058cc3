"""Which recipe when: training recipes on the same real images, run as a user runs them.

Each recipe is one ``foramflow train`` command on the same folder-per-class set and the same
seeded 80/20 split; then ``foramflow classify`` on the validation images times the bundle
end to end. Per recipe it prints validation top-1, macro F1, mean per-class recall, the
training command's wall time, classify images/s and the peak memory of each command.
A run that also wrote ``bundle_fast`` (the same network reading each image once) gets a
second row, ``NAME_fast``, with that bundle's validation figures and classify speed and the
same training time. An ensemble row joins recipes already run with ``foramflow ensemble``
and scores the joined bundle with ``foramflow evaluate`` on the same validation images; its
training time is the sum of its members'.

    python benchmarks/bench_recipes.py                        # ndsb_plankton_dev, every recipe
    python benchmarks/bench_recipes.py --recipes transfer,auto --out runs/recipes
    python benchmarks/bench_recipes.py --data ../shared/data/planktonclas_demo --min-per-class 5
    python benchmarks/bench_recipes.py --classes 30 --per-class 20   # a small-data subset
    python benchmarks/bench_recipes.py --recipes auto,transfer_lite2_plain,ensemble
    python benchmarks/bench_recipes.py --out runs/recipes --reuse   # add the missing rows

Each measured row is kept in the work folder (``NAME.row.json``); with ``--reuse`` a row
found there is taken as it is, so a long table can be completed over several sittings
(its timings then come from different hours of the same machine).

Run it alone: two benchmarks at once on a small machine spoil each other's timings. The
runs share a feature cache of their own in the work folder, so that a transfer recipe's
time includes computing its features, as on a user's first run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOREVER = 6 * 3600

#: name → extra ``foramflow train`` arguments
RECIPES = {
    "paper": ["--model", "base_cyclic"],
    "transfer": ["--model", "efficientnet_lite0_tl"],
    "transfer_plain": ["--model", "efficientnet_lite0_tl", "--no-cyclic"],
    "fine_tune": ["--model", "efficientnet_lite0_ft"],
    "fine_tune_plain": ["--model", "efficientnet_lite0_ft", "--no-cyclic"],
    "transfer_lite2_plain": ["--model", "efficientnet_lite2_tl", "--no-cyclic"],
    "top": ["--model", "efficientnet_lite0_top"],
    "top_plain": ["--model", "efficientnet_lite0_top", "--no-cyclic"],
    "top_fp32": ["--model", "efficientnet_lite0_top", "--precision", "fp32"],
    "top_e12": ["--model", "efficientnet_lite0_top", "--epochs", "12"],
    "top_128": ["--model", "efficientnet_lite0_top", "--input-size", "128"],
    "top_192_e12": ["--model", "efficientnet_lite0_top", "--input-size", "192", "--epochs", "12"],
    "top_flips": ["--model", "efficientnet_lite0_top", "--flips"],
    "top_ema": ["--model", "efficientnet_lite0_top", "--ema", "0.999"],
    "top_lite1": ["--model", "efficientnet_lite1_top"],
    "top_lite2": ["--model", "efficientnet_lite2_top"],
    "auto": [],
}
#: name → the recipes whose bundles it joins (run them first, in the same --recipes list)
ENSEMBLES = {
    "ensemble": ["auto", "transfer_lite2_plain"],
    "ensemble_top": ["top", "transfer_lite2_plain"],
    "ensemble_sizes": ["top", "top_128"],
    "ensemble_backbones": ["auto", "top_lite2"],
}


def default_data() -> Path:
    root = Path(os.environ.get("FORAMFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
    return root / "ndsb_plankton_dev"


def subset(source: Path, folder: Path, classes: int, per_class: int, seed: int) -> Path:
    """Links to ``per_class`` images of the ``classes`` largest classes with that many."""
    import random

    rng = random.Random(seed)
    sizes = {d: sorted(d.iterdir()) for d in source.iterdir() if d.is_dir()}
    chosen = sorted((d for d, files in sizes.items() if len(files) >= per_class), key=str)
    for directory in sorted(chosen, key=lambda d: -len(sizes[d]))[:classes]:
        (folder / directory.name).mkdir(parents=True)
        for image in rng.sample(sizes[directory], per_class):
            (folder / directory.name / image.name).symlink_to(image.resolve())
    return folder


#: Runs the CLI and, at exit, writes the peak memory of it and of its worker processes.
_CHILD = (
    "import atexit, resource, sys\n"
    "path = sys.argv[1]\n"
    "def peak():\n"
    "    usage = [resource.getrusage(w).ru_maxrss for w in "
    "(resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]\n"
    "    open(path, 'w').write(str(max(usage)))\n"
    "atexit.register(peak)\n"
    "sys.argv = sys.argv[1:]\n"
    "from foramflow.cli import app\n"
    "app()\n"
)


class Refused(Exception):
    """A recipe's command failed: the table says why, and the other recipes run on."""


def foramflow(*args: str, log: Path) -> tuple[float, float]:
    """Run a foramflow command; (wall seconds, peak MB of one of its processes)."""
    peak_file = log.with_suffix(".peak")
    started = time.perf_counter()
    env = {**os.environ, "FORAMFLOW_FEATURE_CACHE": str(log.parent / "feature_cache")}
    with open(log, "w") as out:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(peak_file), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=FOREVER,
            env=env,
        )
    seconds = time.perf_counter() - started
    if done.returncode:
        lines = log.read_text().strip().splitlines()
        raise Refused(lines[-1] if lines else f"exit status {done.returncode}")
    return seconds, int(peak_file.read_text()) / 1024


def validation_folder(run: Path, folder: Path, *, by_class: bool = False) -> int:
    """The run's validation images as links: one sample folder, or a folder per class
    (``by_class``); returns their number."""
    import pandas as pd

    split = pd.read_csv(run / "split.csv")
    validation = split[split["part"] == "validation"]
    shutil.rmtree(folder, ignore_errors=True)  # an earlier run's links, in a reused --out
    for i, (path, label) in enumerate(zip(validation["path"], validation["class"], strict=True)):
        place = folder / label if by_class else folder
        place.mkdir(parents=True, exist_ok=True)
        (place / f"{i:06d}{Path(path).suffix}").symlink_to(Path(path).resolve())
    return len(validation)


def measure(name: str, args: list[str], data: Path, work: Path, options) -> dict:
    run = work / name
    train_args = ["train", str(data), "--out", str(run), "--seed", "0", *args]
    if options.min_per_class:
        train_args += ["--min-per-class", str(options.min_per_class)]
    print(f"{name}: foramflow {' '.join(train_args)}", flush=True)
    train_s, train_mb = foramflow(*train_args, log=work / f"{name}.train.log")
    metrics = json.loads((run / "metrics.json").read_text())
    n_val = validation_folder(run, work / f"{name}.val" / "all")
    classify_args = ["classify", str(run / "bundle"), str(work / f"{name}.val"), "--overwrite"]
    classify_s, classify_mb = foramflow(
        *classify_args, "--out", str(work / f"{name}.classify"), log=work / f"{name}.classify.log"
    )
    config = (run / "config.yaml").read_text()
    model = next(line.split(":", 1)[1].strip() for line in config.splitlines()
                 if line.startswith("model:"))  # fmt: skip
    return {
        "recipe": name,
        "model": model,
        "top1": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "mean_recall": metrics["macro_recall"],
        "train_min": train_s / 60,
        "classify_per_s": n_val / classify_s,
        "train_mb": train_mb,
        "classify_mb": classify_mb,
    }


def measure_fast(row: dict, work: Path) -> dict | None:
    """The run's bundle_fast (its network reading each image once), where it wrote one:
    scored on the validation split by the training run, timed here as a user classifies."""
    name = row["recipe"]
    run = work / name
    if not (run / "bundle_fast").is_dir():
        return None
    one_view = json.loads((run / "metrics.json").read_text())["one_view"]
    n_val = validation_folder(run, work / f"{name}.val" / "all")
    classify_s, classify_mb = foramflow(
        "classify", str(run / "bundle_fast"), str(work / f"{name}.val"), "--overwrite",
        "--out", str(work / f"{name}_fast.classify"), log=work / f"{name}_fast.classify.log",
    )  # fmt: skip
    return {
        **row,
        "recipe": f"{name}_fast",
        "model": f"{row['model']} (bundle_fast)",
        "top1": one_view["accuracy"],
        "macro_f1": one_view["macro_f1"],
        "mean_recall": one_view["macro_recall"],
        "classify_per_s": n_val / classify_s,
        "classify_mb": classify_mb,
    }


def measure_ensemble(name: str, members: list[dict], work: Path) -> dict:
    """Join the members' bundles, then score and time the ensemble as a user would."""
    import pandas as pd

    missing = sorted(set(ENSEMBLES[name]) - {m["recipe"] for m in members})
    if missing:
        raise Refused(f"run its members first: {', '.join(missing)}")
    runs = [str(work / m["recipe"]) for m in members]
    print(f"{name}: foramflow ensemble {' '.join(runs)}", flush=True)
    bundle = work / f"{name}.bundle"
    foramflow("ensemble", *runs, "--out", str(bundle), log=work / f"{name}.ensemble.log")
    labelled = work / f"{name}.labelled"
    n_val = validation_folder(work / members[0]["recipe"], labelled, by_class=True)
    evaluation = work / f"{name}.evaluation"
    foramflow(
        "evaluate", str(bundle), str(labelled), "--out", str(evaluation),
        log=work / f"{name}.evaluate.log",
    )  # fmt: skip
    confusion = pd.read_csv(evaluation / "confusion_matrix.csv", index_col=0).to_numpy()
    per_class = pd.read_csv(evaluation / "per_class_metrics.csv")
    validation_folder(work / members[0]["recipe"], work / f"{name}.val" / "all")
    classify_s, classify_mb = foramflow(
        "classify", str(bundle), str(work / f"{name}.val"), "--overwrite", "--out",
        str(work / f"{name}.classify"), log=work / f"{name}.classify.log",
    )  # fmt: skip
    return {
        "recipe": name,
        "model": " + ".join(m["model"] for m in members),
        "top1": confusion.trace() / confusion.sum(),
        "macro_f1": per_class["f1"].mean(),
        "mean_recall": per_class["recall"].mean(),
        "train_min": sum(m["train_min"] for m in members),
        "classify_per_s": n_val / classify_s,
        "train_mb": max(m["train_mb"] for m in members),
        "classify_mb": classify_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temp folder)")
    parser.add_argument("--classes", type=int, help="a subset: this many classes …")
    parser.add_argument("--per-class", type=int, default=20, help="… of this many images")
    parser.add_argument("--min-per-class", type=int)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="take the rows of recipes already measured in --out instead of running them again",
    )
    options = parser.parse_args()
    if not options.data.is_dir():
        sys.exit(f"benchmark data not found at {options.data}")
    work = options.out or Path(tempfile.mkdtemp(prefix="bench_recipes_"))
    work.mkdir(parents=True, exist_ok=True)
    data = options.data
    if options.classes:
        data = subset(data, work / "subset", options.classes, options.per_class, seed=0)
    rows, refused = [], {}
    for name in options.recipes.split(","):
        saved = work / f"{name}.row.json"
        if options.reuse and saved.is_file():
            rows.append(json.loads(saved.read_text()))
            if (work / f"{name}_fast.row.json").is_file():
                rows.append(json.loads((work / f"{name}_fast.row.json").read_text()))
            print(f"{name}: reusing the row measured earlier in {work}", flush=True)
            continue
        try:
            if name in ENSEMBLES:
                members = [r for r in rows if r["recipe"] in ENSEMBLES[name]]
                rows.append(measure_ensemble(name, members, work))
            else:
                rows.append(measure(name, RECIPES[name], data, work, options))
            saved.write_text(json.dumps(rows[-1]))
            fast = None if name in ENSEMBLES else measure_fast(rows[-1], work)
            if fast:
                rows.append(fast)
                (work / f"{fast['recipe']}.row.json").write_text(json.dumps(fast))
        except Refused as why:
            refused[name] = str(why)
    print()
    print(
        "| recipe | model | top-1 | macro F1 | mean recall | train min | classify img/s "
        "| train MB | classify MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['recipe']} | {r['model']} | {r['top1']:.4f} | {r['macro_f1']:.4f} | "
              f"{r['mean_recall']:.4f} | {r['train_min']:.1f} | {r['classify_per_s']:.0f} | "
              f"{r['train_mb']:.0f} | {r['classify_mb']:.0f} |")  # fmt: skip
    for name, why in refused.items():
        print(f"| {name} | refused: {why} | | | | | | | |")
    if not options.out:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
