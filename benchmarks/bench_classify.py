"""Whole-core classification speed and memory: ``foramflow classify`` end to end vs the CNN alone.

Lays out N real images (../shared/data/ndsb_plankton_dev) as 10 sample folders of symbolic
links in a temporary folder (nothing is copied), then measures on this machine:

* the CNN alone on preprocessed batches already in memory: fp32 and int8 (ONNX Runtime),
  bf16 (OpenVINO);
* ``foramflow classify`` end to end (scan → decode → preprocess → CNN → chunked Parquet →
  merge → counts), each run a fresh command: fp32 and bf16 on 5 000 and N images, int8 on
  5 000; images/s over the command's wall-clock time, and peak memory summed over the command
  and its decoding processes (RSS sampled every 0.1 s from /proc). The bf16 check and the int8
  calibration that a first run would do are done beforehand and timed on their own;
* top-1 agreement of bf16 with fp32 over all N images, and of int8 over the 5 000 (bf16 with
  its fp32 recheck of close calls, as classify runs it).

Give a bundle with --bundle (it is copied, so that adding its int8 model leaves yours
alone), or let the script train a Base-Cyclic, 8 filters, 128 × 128 grey network for a
few epochs (--epochs) on 150 images of each of the 12 largest classes: a trained network gives
confident, realistic outputs for the agreement figure, which an untrained one would not.

Usage: python benchmarks/bench_classify.py [--bundle DIR] [--images 20000] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from foramflow.bundle import Bundle
from foramflow.bundle.bf16 import check_bf16
from foramflow.bundle.engine import Engine, available_cores
from foramflow.bundle.quantize import quantize_bundle
from foramflow.imaging.preprocess import load_and_preprocess

DATA = Path(os.environ.get("FORAMFLOW_SHARED_DATA", Path(__file__).parents[2] / "shared" / "data"))
SOURCE = DATA / "ndsb_plankton_dev"
FORAMFLOW = [sys.executable, "-c", "from foramflow.cli import app; app()"]
N_SAMPLES = 10


def all_images() -> list[Path]:
    return sorted(p for p in SOURCE.glob("*/*.jpg"))


def layout(images: list[Path], root: Path) -> Path:
    """Symbolic links ``S00 … S09/<class>__<name>``, images dealt round-robin to samples."""
    for i, image in enumerate(images):
        folder = root / f"S{i % N_SAMPLES:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{image.parent.name}__{image.name}").symlink_to(image)
    return root


def train_bundle(work: Path, images: list[Path], epochs: int) -> Path:
    """A Base-Cyclic 8×128 bundle trained briefly on 150 images of each of 12 large classes."""
    by_class: dict[str, list[Path]] = {}
    for image in images:
        by_class.setdefault(image.parent.name, []).append(image)
    large = sorted(by_class, key=lambda c: -len(by_class[c]))
    train = work / "train"
    for name in sorted(large[:12]):
        (train / name).mkdir(parents=True)
        for image in by_class[name][:150]:
            (train / name / image.name).symlink_to(image)
    command = [*FORAMFLOW, "train", str(train), "--out", str(work / "run"), "--model",
               "base_cyclic", "--input-size", "128", "--filters", "8", "--grey", "--epochs",
               str(epochs)]  # fmt: skip
    print("training:", " ".join(command[3:]), flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return work / "run" / "bundle"


def tree_rss(pid: int) -> int:
    """Resident memory in bytes of a process and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def classify_run(bundle: Path, images: Path, out: Path, precision: str) -> dict:
    """Run ``foramflow classify`` as a fresh command; wall time and peak tree memory."""
    command = [*FORAMFLOW, "classify", str(bundle), str(images), "--out", str(out),
               "--precision", precision]  # fmt: skip
    peak, done = 0, threading.Event()
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(process.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, stderr = process.communicate()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if process.returncode:
        raise RuntimeError(f"classify failed: {stderr.decode()[-2000:]}")
    run = json.loads((out / "run.json").read_text())
    return {"wall_s": wall, "peak_mb": peak / 2**20, "images": run["n_images"], "run": run}


def cnn_alone(
    bundle: Bundle, images: list[Path], precision: str, repeats: int = 3
) -> tuple[float, float]:
    """(median images/s of the network on preprocessed batches of 64 already in memory,
    share of images recomputed in fp32 as close calls)."""
    batch = np.stack([load_and_preprocess(p, bundle.spec) for p in images])
    engine = Engine(bundle, precision=precision)
    engine.predict(batch[:64])
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(batch), 64):
            engine.predict(batch[i : i + 64])
        rates.append(len(batch) / (time.perf_counter() - start))
    return float(np.median(rates)), engine.n_rechecked / (len(batch) * repeats + 64)


def agreement(fp32: Path, other: Path) -> tuple[float, float, int]:
    """(top-1 agreement, agreement of the final class incl. unsure, images compared)."""
    a = pd.read_parquet(fp32 / "predictions.parquet").set_index("path")
    b = pd.read_parquet(other / "predictions.parquet").set_index("path").loc[a.index]
    ok = (a["status"] != "error").to_numpy()
    probs = [c for c in a.columns if c.startswith("prob_")]
    top_a = a[probs].to_numpy()[ok].argmax(1)
    top_b = b[probs].to_numpy()[ok].argmax(1)
    same_class = (a["class"].to_numpy()[ok] == b["class"].to_numpy()[ok]).mean()
    return float((top_a == top_b).mean()), float(same_class), int(ok.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="a bundle (else: train one)")
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    if not SOURCE.is_dir():
        sys.exit(f"needs the real images at {SOURCE} (set FORAMFLOW_SHARED_DATA)")
    images = all_images()
    if len(images) < args.images:
        sys.exit(f"only {len(images)} images at {SOURCE}")
    picked = [images[i] for i in np.linspace(0, len(images) - 1, args.images).astype(int)]
    print(f"{available_cores()} cores, load average {os.getloadavg()[0]:.1f} at start")

    with tempfile.TemporaryDirectory(prefix="bench_classify_") as tmp:
        work = Path(tmp)
        source = args.bundle or train_bundle(work, images, args.epochs)
        bundle_dir = work / "bundle"
        shutil.copytree(source, bundle_dir)
        meta = Bundle.load(bundle_dir).meta
        print(f"bundle: {meta.model}, {len(meta.labels)} classes, input "
              f"{meta.preprocessing}")  # fmt: skip
        five = layout(picked[:: max(1, len(picked) // 5000)][:5000], work / "images_5000")
        full = layout(picked, work / f"images_{args.images}")

        start = time.perf_counter()
        record = quantize_bundle(bundle_dir, sorted(full.rglob("*.jpg")))
        print(f"int8 model: {record['calibration_images']} calibration images, "
              f"{time.perf_counter() - start:.0f} s; top-1 agreement on {record['check_images']} "
              f"other images {record['top1_agreement']:.2%}")  # fmt: skip

        start = time.perf_counter()
        record = check_bf16(Bundle.load(bundle_dir), sorted(full.rglob("*.jpg")))
        seconds = time.perf_counter() - start
        print(f"bf16 check: top-1 agreement {record['top1_agreement']:.2%} on "
              f"{record['check_images']} images, largest probability change "
              f"{record['max_probability_change']:.3f}; with close calls recomputed "
              f"{record['rechecked_agreement']:.2%} ({record['recheck_share']:.1%} of "
              f"images), {seconds:.0f} s")  # fmt: skip

        bundle = Bundle.load(bundle_dir)
        sample_images = picked[:: max(1, len(picked) // 1024)][:1024]
        for precision in ("fp32", "bf16", "int8"):
            rate, rechecked = cnn_alone(bundle, sample_images, precision)
            extra = f"; {rechecked:.1%} close calls recomputed in fp32" if rechecked else ""
            print(f"CNN alone {precision}: {rate:.0f} images/s (batches of 64, preloaded){extra}")

        runs = ((five, "fp32"), (full, "fp32"), (five, "bf16"), (full, "bf16"), (five, "int8"))
        for folder, precision in runs:
            n = sum(1 for _ in folder.rglob("*.jpg"))
            r = classify_run(bundle_dir, folder, work / f"out_{precision}_{n}", precision)
            print(f"end to end {precision}, {n} images: {n / r['wall_s']:.0f} images/s "
                  f"(wall {r['wall_s']:.1f} s), peak memory {r['peak_mb']:.0f} MB, "
                  f"{r['run']['n_errors']} errors")  # fmt: skip
        comparisons = (("bf16", args.images), ("bf16", 5000), ("int8", 5000))
        for precision, n_images in comparisons:
            top1, same, n = agreement(
                work / f"out_fp32_{n_images}", work / f"out_{precision}_{n_images}"
            )
            print(f"{precision} vs fp32 over {n} images: top-1 agreement {top1:.2%}, "
                  f"same final class (incl. unsure) {same:.2%}")  # fmt: skip
        print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
