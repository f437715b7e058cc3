"""Base-Cyclic on real plankton images: accuracy, training and inference speed, memory.

Two parts, run separately because the first takes minutes and the second hours:

  throughput  training images/s with augmentation (bf16 autocast and fp32 side by side),
              inference images/s (ONNX Runtime fp32, PyTorch bf16), peak memory
  accuracy    a full training run with foramflow's trainer; prints validation accuracy,
              mean F1 over classes, training images/s and peak memory

    python benchmarks/bench_train.py throughput --size 128
    python benchmarks/bench_train.py accuracy --size 64 --out runs/bench64 [--epochs N]

Data: ../shared/data/ndsb_plankton_dev (or $FORAMFLOW_SHARED_DATA/ndsb_plankton_dev), classes
under 40 images dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from foramflow.bundle import Bundle, BundleMeta, read_meta, write_bundle
from foramflow.bundle.predict import predict_timed
from foramflow.data.arrays import preprocess_all
from foramflow.data.augment import augment_batch
from foramflow.data.dataset import load_image_set
from foramflow.imaging.preprocess import PreprocessSpec
from foramflow.models.registry import create_model
from foramflow.training.device import CompiledOrEager
from foramflow.training.export import onnx_bytes

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    root = Path(os.environ.get("FORAMFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
    path = root / "ndsb_plankton_dev"
    if not path.is_dir():
        sys.exit(f"benchmark data not found at {path}")
    return path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def throughput(size: int, batches: int, repeats: int) -> None:
    torch.set_num_threads(os.cpu_count() or 1)
    image_set = load_image_set(data_dir(), min_per_class=40)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(image_set), size=64 * batches, replace=False)
    spec = PreprocessSpec(size=size, channels=1)
    images, _, _ = preprocess_all([image_set.paths[i] for i in pick], spec)
    labels = torch.from_numpy(image_set.labels[pick])
    n_classes = len(image_set.classes)
    print(f"{len(image_set)} images, {n_classes} classes, input {size}×{size} grey, batch 64")

    results = {}
    for variant in ("fp32", "bf16", "bf16+compile"):
        precision, compiled = variant.split("+")[0], variant.endswith("compile")
        torch.manual_seed(0)
        network = create_model("base_cyclic", n_classes=n_classes, input_size=size, channels=1)
        network = network.to(memory_format=torch.channels_last).train()
        step_network = CompiledOrEager(network, print) if compiled else network
        optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(0)
        bf16 = precision == "bf16"
        rates = []
        for repeat in range(repeats + 1):
            start = time.perf_counter()
            for b in range(batches):
                x = torch.from_numpy(images[b * 64 : (b + 1) * 64]).float()
                x = augment_batch(x, generator=generator).contiguous(
                    memory_format=torch.channels_last
                )
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    logits = step_network(x)
                loss = F.cross_entropy(logits.float(), labels[b * 64 : (b + 1) * 64])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            if repeat:  # the first pass warms up the kernels (and compiles)
                rates.append(64 * batches / (time.perf_counter() - start))
            else:
                print(f"  {variant}: first pass (warm-up) {time.perf_counter() - start:.1f} s")
        results[variant] = statistics.median(rates)
        print(
            f"training with augmentation, {variant}: median {results[variant]:.1f} images/s "
            f"over {repeats} passes of {batches} batches ({', '.join(f'{r:.1f}' for r in rates)})"
        )
        if compiled:
            continue

        network.eval()
        batch = torch.from_numpy(images[:256]).float().contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            network(batch[:64])
            start = time.perf_counter()
            for i in range(0, 256, 64):
                network(batch[i : i + 64])
        print(f"inference PyTorch {precision}: {256 / (time.perf_counter() - start):.1f} images/s")
        if precision == "fp32":
            meta = BundleMeta(labels=image_set.classes, preprocessing=spec)
            with tempfile.TemporaryDirectory() as tmp:
                bundle = Bundle.load(write_bundle(tmp, meta, onnx_bytes(network, spec)))
                timed = predict_timed(bundle.engine(), images[:256])
                print(
                    f"inference, the classify engine ({timed.engine}, batches of "
                    f"{timed.batch_size}): {1000 / timed.ms_per_image:.1f} images/s"
                )
    for variant in ("bf16", "bf16+compile"):
        print(f"{variant} / fp32 training speed: {results[variant] / results['fp32']:.2f}×")
    print(f"peak memory (RSS): {peak_rss_mb():.0f} MB")


def accuracy(
    size: int,
    out: str,
    epochs: int | None,
    window: int | None,
    max_epochs: int,
    precision: str,
    class_weights: str,
) -> None:
    from foramflow.cli.console import RichProgress
    from foramflow.training.step import train

    start = time.perf_counter()
    train(
        data_dir(),
        out,
        model="base_cyclic",
        input_size=size,
        channels=1,
        filters=8,
        epochs=epochs,
        alrs_window_epochs=window,
        max_epochs=max_epochs,
        precision=precision,
        class_weights=class_weights,
        progress=RichProgress(),
    )
    wall = time.perf_counter() - start
    metrics = json.loads((Path(out) / "metrics.json").read_text())
    meta = read_meta(Path(out) / "bundle")
    import pandas as pd

    log = pd.read_csv(Path(out) / "log.csv")
    print(
        f"input {size}×{size} grey, Base-Cyclic 8 filters, {len(meta.labels)} classes, "
        f"{meta.training_set.n_train} training / {meta.training_set.n_validation} "
        f"validation images, precision {precision}, class weights {class_weights}"
    )
    print(f"epochs: {meta.training.epochs} (best {meta.training.best_epoch})")
    print(f"validation accuracy: {metrics['accuracy']:.4f}")
    print(f"mean F1 over classes: {metrics['macro_f1']:.4f}")
    print(f"training images/s (median over epochs): {log['train_images_per_s'].median():.1f}")
    print(
        f"inference (the classify engine, fp32): {1000 / meta.inference_ms_per_image:.1f} images/s"
    )
    print(f"wall time: {wall / 60:.1f} min; peak memory (RSS): {peak_rss_mb():.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--size", type=int, default=128)
    t.add_argument("--batches", type=int, default=4)
    t.add_argument("--repeats", type=int, default=3)
    a = sub.add_parser("accuracy")
    a.add_argument("--size", type=int, default=64)
    a.add_argument("--out", required=True)
    a.add_argument("--epochs", type=int, default=None, help="fixed epochs instead of ALRS")
    a.add_argument("--alrs-window", type=int, default=None, help="ALRS window in epochs")
    a.add_argument("--max-epochs", type=int, default=300, help="upper limit in ALRS mode")
    a.add_argument("--precision", default="auto")
    a.add_argument("--class-weights", default="clamped", choices=["clamped", "none"])
    args = parser.parse_args()
    if args.part == "throughput":
        throughput(args.size, args.batches, args.repeats)
    else:
        accuracy(
            args.size,
            args.out,
            args.epochs,
            args.alrs_window,
            args.max_epochs,
            args.precision,
            args.class_weights,
        )


if __name__ == "__main__":
    main()
