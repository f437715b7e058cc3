"""Speed on the machine at hand, side by side with the authors' MISO 3.1.25: classification
end to end (start-up included, and the second of two runs, the first doing a bundle's
one-off checks on a machine) of a training run's bundle, its ``bundle_fast/`` and each
precision, with their top-1 on held-out images; quiet and with one core kept busy; and,
with ``--train``, the default training quiet and beside the busy process.

    python benchmarks/bench_speed.py [--run RUN] [--train DIR] [--loads quiet,busy]
                                     [--limit 2000] [--save NAME] [--keep FOLDER]

``--train DIR`` trains the default on DIR (``foramflow train DIR``, no options), quiet and
then with one core busy (``--loads`` may name one), each with a fresh user cache (so that
its timed choices are made afresh); with ``--save``, the training rows are saved as soon as
they are measured, so that a bench stopped during classification keeps them. RUN is a
finished ``foramflow train`` folder, by default the training just made (the quiet one where
there are two): its validation images (split.csv) are classified, as a folder per class, so
that each result's top-1 is known. MISO runs its own Base-Cyclic at its default 128 px in
its own environment (docs/contributing.md), with untrained weights (they do not change its
speed) and three channels: its classify_folder reads every image as RGB unless model.json's
parameters say otherwise, which its network_info.xml does not carry. The busy process is a
Python ``while True: pass`` at the same priority, started and stopped by the script.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from saved_results import machine, save_result

FORAMFLOW = (sys.executable, "-c", "from foramflow.cli import app; app()")
MISO = "MISO 3.1.25 Base-Cyclic 128 px RGB"
MISO_PYTHON = Path.home() / ".cache" / "foramflow-interop" / "miso-3.1.25" / "bin" / "python"

MISO_SAVE = textwrap.dedent(
    """
    import sys
    from collections import OrderedDict
    from datetime import datetime
    from miso.deploy.model_info import ModelInfo
    from miso.deploy.saving import convert_to_inference_mode_tf2, save_frozen_model_tf2
    from miso.models.factory import generate
    from miso.training.parameters import MisoParameters

    out, labels = sys.argv[1], sys.argv[2].split(",")
    tp = MisoParameters()
    tp.dataset.num_classes = len(labels)
    tp.cnn.img_shape, tp.cnn.img_type = [128, 128, 3], "rgb"
    model = generate(tp)
    frozen = save_frozen_model_tf2(
        convert_to_inference_mode_tf2(model, lambda: generate(tp)), out, "frozen_model.pb"
    )
    info = ModelInfo("base_cyclic", "speed only", tp.cnn.id, datetime.now(), "frozen_model.pb",
                     tp, OrderedDict(image=frozen.inputs[0]), OrderedDict(pred=frozen.outputs[0]),
                     "", labels, [1] * len(labels), "rescale", [255, 0, 1], 0.0,
                     *[[0.0] * len(labels)] * 3, [0] * len(labels), 1, 0.0, 0.2, 0.0)
    info.save(out + "/network_info.xml")
    """
)
MISO_CLASSIFY = (
    "import sys; from miso.inference.classify import classify_folder; "
    "classify_folder(sys.argv[1], sys.argv[2], sys.argv[3], 64)"
)


def spin() -> None:
    while True:
        pass


@contextmanager
def busy_core(busy: bool):
    """One process keeping a core busy while the block runs, when ``busy``."""
    spinner = multiprocessing.Process(target=spin, daemon=True) if busy else None
    if spinner:
        spinner.start()
    try:
        yield
    finally:
        if spinner:
            spinner.terminate()
            spinner.join()


def holdout(run: Path, tree: Path, limit: int) -> int:
    """Link up to ``limit`` of the run's validation images, spread over its classes, into a
    folder per class; return how many."""
    split = pd.read_csv(run / "split.csv")
    validation = split[split["part"] == "validation"]
    step = max(1, len(validation) // limit)
    chosen = validation.iloc[::step].head(limit)
    for row in chosen.itertuples():
        target = tree / row[2] / Path(row.path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(row.path)
    return len(chosen)


def timed(command: list[str], env: dict | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{' '.join(command[:4])} … failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def classify(bundle: Path, tree: Path, out: Path, precision: str, busy: bool) -> dict:
    """A classification run twice: the first wall time (with the one-off accuracy checks and
    timings of a bundle's first run on a machine), and the images/s, top-1 on the held-out
    images and setup of the second."""
    command = [*FORAMFLOW, "classify", str(bundle), str(tree), "--out", str(out)]
    cache = out.parent / f"cache-{bundle.name}-{precision}-{busy}"  # a first run here
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    walls = []
    for _ in range(2):
        shutil.rmtree(out, ignore_errors=True)
        with busy_core(busy):
            walls.append(timed([*command, "--precision", precision], env=env))
    first, wall = walls
    predictions = pd.read_parquet(out / "predictions.parquet")
    probs = predictions[[c for c in predictions.columns if c.startswith("prob_")]]
    top = probs.columns.str.removeprefix("prob_")[np.argmax(probs.to_numpy(), axis=1)]
    run = json.loads((out / "run.json").read_text())
    return {
        "first": first,
        "wall": wall,
        "rate": len(predictions) / wall,
        "top1": float(np.mean(top == predictions["sample"].to_numpy())),
        "precision": run.get("precision"),
        "setup": run.get("setup") or {},
    }


def miso(tree: Path, work: Path, labels: list[str], busy: bool) -> dict | None:
    """MISO 3.1.25's classify_folder with its Base-Cyclic, or None without its environment."""
    if not MISO_PYTHON.exists():
        print(f"MISO left out: no {MISO_PYTHON} (docs/contributing.md)")
        return None
    folder = work / "miso_model"
    if not (folder / "network_info.xml").exists():
        (work / "miso_save.py").write_text(MISO_SAVE)
        timed([str(MISO_PYTHON), str(work / "miso_save.py"), str(folder), ",".join(labels)])
    command = [str(MISO_PYTHON), "-c", MISO_CLASSIFY, str(folder / "network_info.xml")]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    n = sum(1 for p in tree.rglob("*") if p.is_file() or p.is_symlink())
    with busy_core(busy):
        wall = timed([*command, str(tree), str(work / "miso.csv")], env=env)
    return {"wall": wall, "rate": n / wall}


def train(data: Path, out: Path, busy: bool) -> dict:
    """The default training's wall time, its epochs' share of it, and the precisions it
    chose (config.yaml)."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "XDG_CACHE_HOME": str(out.parent / f"cache-train-{busy}")}
    with busy_core(busy):
        wall = timed([*FORAMFLOW, "train", str(data), "--out", str(out)], env=env)
    meta = json.loads((out / "bundle" / "model.json").read_text())
    config = yaml.safe_load((out / "config.yaml").read_text()) or {}
    chosen = {
        stage: (record or {}).get("precision")
        for stage, record in (config.get("precision_choice") or {}).items()
    }
    return {"wall": wall, "epochs": (meta.get("training") or {}).get("time_s"), "chosen": chosen}


def save(name: str, rows: list[list], run: Path, n: int | None) -> Path:
    """Write the rows measured so far to benchmarks/results/NAME.json."""
    images = f", {n} held-out images" if n is not None else " (training only)"
    return save_result(
        name,
        title=f"Classification speed of {run.name}'s bundles against MISO 3.1.25{images}",
        columns=["what", "machine", "ran as", "first run s", "wall s", "images/s", "top-1",
                 "× MISO"],
        rows=rows,
        notes="End to end: the command's wall time, start-up included; each foramflow "
        "command runs twice, and the first run's wall time includes the one-off checks "
        "and timings of a bundle's first run on a machine. Top-1 is the "
        "network's top class against the folder the image came from (before the unsure "
        "rule). MISO's weights are untrained (speed only).",
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run", type=Path, help="a finished training run (default: the one --train makes)"
    )
    parser.add_argument("--limit", type=int, default=2000, help="held-out images classified")
    parser.add_argument("--train", type=Path, help="also time the default training on DIR")
    parser.add_argument(
        "--loads", default="quiet,busy", help="the training's loads: quiet, busy or both"
    )
    parser.add_argument("--save", metavar="NAME", help="also write benchmarks/results/NAME.json")
    parser.add_argument(
        "--keep", type=Path, help="work in this folder and keep it (the runs trained, outputs)"
    )
    args = parser.parse_args()
    who = machine()
    print(f"# {who['cpu']}, {who['cores']} cores, flags: {' '.join(who['flags'])}")
    if args.run is None and args.train is None:
        parser.error("give --run, --train or both")
    loads = {"quiet": False, "busy": True}
    if not set(args.loads.split(",")) <= set(loads):
        parser.error(f"--loads: quiet, busy or quiet,busy, not {args.loads!r}")
    rows: list[list] = []
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.train:
            for busy in (loads[load] for load in args.loads.split(",")):
                found = train(args.train, work / f"train-{'busy' if busy else 'quiet'}", busy)
                load = "one core busy" if busy else "quiet"
                how = ", ".join(f"{k} {v}" for k, v in found["chosen"].items())
                rows.append(
                    [f"train {args.train.name} (default)", load, how, "",
                     round(found["wall"], 1), f"epochs {found['epochs']:.0f} s", "", ""]
                )  # fmt: skip
                print(" | ".join(map(str, rows[-1])), flush=True)
            if args.save:
                save(args.save, rows, args.run or work / f"train-{args.loads.split(',')[0]}", None)
        args.run = args.run or work / f"train-{args.loads.split(',')[0]}"
        tree = work / "images"
        n = holdout(args.run, tree, args.limit)
        labels = json.loads((args.run / "bundle" / "model.json").read_text())["labels"]
        print(f"{n} held-out images in {len(labels)} classes")
        results = {}
        default = classify(args.run / "bundle", tree, work / "out", "auto", busy=False)
        results["default (auto)", "quiet"] = default
        tried = sorted({t["precision"] for t in default["setup"].get("trials", [])} | {"fp32"})
        for precision in tried:
            name = f"bundle, {precision}"
            results[name, "quiet"] = classify(
                args.run / "bundle", tree, work / "out", precision, False
            )
        fast = args.run / "bundle_fast"
        if fast.is_dir():
            results["bundle_fast (auto)", "quiet"] = classify(
                fast, tree, work / "out", "auto", False
            )
        results["default (auto)", "one core busy"] = classify(
            args.run / "bundle", tree, work / "out", "auto", busy=True
        )
        for busy in (False, True):
            found = miso(tree, work, labels, busy)
            if found:
                results["MISO 3.1.25 Base-Cyclic 128 px", "one core busy" if busy else "quiet"] = (
                    found
                )
        reference = results.get(("MISO 3.1.25 Base-Cyclic 128 px", "quiet"))
        for (name, load), found in results.items():
            setup = found.get("setup") or {}
            how = (
                f"{found['precision']}, {setup.get('threads')} thread(s), "
                f"batch {setup.get('batch_size')} ({setup.get('source')})"
                if setup
                else ""
            )
            rows.append(
                [
                    name,
                    load,
                    how,
                    round(found["first"], 1) if "first" in found else "",
                    round(found["wall"], 1),
                    round(found["rate"], 1),
                    f"{found['top1']:.1%}" if "top1" in found else "untrained",
                    f"{found['rate'] / reference['rate']:.2f}" if reference else "",
                ]
            )
            print(" | ".join(map(str, rows[-1])), flush=True)
        quiet, loaded = (
            results["default (auto)", "quiet"],
            results["default (auto)", "one core busy"],
        )
        print(f"classify under load keeps {loaded['rate'] / quiet['rate']:.0%} of its quiet speed")
    if args.save:
        print(f"saved: {save(args.save, rows, args.run, n)}")


if __name__ == "__main__":
    main()
