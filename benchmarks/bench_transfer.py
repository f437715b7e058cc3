"""Transfer learning on real plankton images, with and without cyclic layers, on this machine.

For each head (EfficientNet-Lite0, cyclic and not), one complete ``TransferTrainer`` run on
../shared/data/ndsb_plankton_dev (classes of ≥ 40 images, 80/20 split, ALRS) with an empty
feature cache; for the plain head, the same run again, which finds every vector in the
cache (the cyclic rerun differs only in its longer ONNX evaluation). Prints one
table: validation accuracy and macro F1 (of the exported ONNX bundle), feature-extraction
images/s, extraction time, tail training time, total training time (extraction + tail, as
METHOD §6 counts it), the wall time of the whole run (reading, preprocessing, export and
evaluation included), and the wall time of the cached rerun.

Before that, bf16 autocast against fp32 for feature extraction (plain head) on a sample of
the images, side by side (alternating, median of 3): images/s and how far the vectors differ.

Usage: python benchmarks/bench_transfer.py [--input-size 128] [--work DIR] [--sample 128]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from foramflow.data.arrays import preprocess_all
from foramflow.imaging.preprocess import PreprocessSpec
from foramflow.models.backbones import efficientnet_lite0_weights
from foramflow.models.transfer import TransferHead
from foramflow.train.config import TrainConfig
from foramflow.train.device import cpu_has_bf16
from foramflow.train.transfer import TransferTrainer, extract_features

DATA = Path(os.environ.get("FORAMFLOW_SHARED_DATA", Path(__file__).parents[2] / "shared" / "data"))
SOURCE = DATA / "ndsb_plankton_dev"
MODEL = "efficientnet_lite0_tl"


def bf16_comparison(input_size: int, n: int) -> list[dict]:
    every = sorted(SOURCE.glob("*/*.jpg"))
    paths = every[:: max(1, len(every) // n)][:n]
    images, _, _ = preprocess_all(paths, PreprocessSpec(size=input_size, channels=1))
    device, rows = torch.device("cpu"), []
    for cyclic in (False,):  # the cyclic head runs the same kernels on 4× the images
        head = TransferHead(
            "efficientnet_lite0",
            input_size=input_size,
            cyclic=cyclic,
            weights=efficientnet_lite0_weights(),
        ).to(memory_format=torch.channels_last)
        times: dict[bool, list[float]] = {False: [], True: []}
        vectors = {}
        for bf16 in (False, True):  # warm-up: oneDNN builds its kernels on first use
            extract_features(head, images[:64], device=device, bf16=bf16)
        for _ in range(3):
            for bf16 in (False, True):
                start = time.perf_counter()
                vectors[bf16] = extract_features(head, images, device=device, bf16=bf16)
                times[bf16].append(time.perf_counter() - start)
        diff = np.abs(vectors[True] - vectors[False]).max(axis=1)
        scale = np.abs(vectors[False]).max(axis=1)
        cos = (vectors[True] * vectors[False]).sum(1) / (
            np.linalg.norm(vectors[True], axis=1) * np.linalg.norm(vectors[False], axis=1)
        )
        rows.append(
            {
                "cyclic": cyclic,
                "fp32_images_per_s": len(images) / statistics.median(times[False]),
                "bf16_images_per_s": len(images) / statistics.median(times[True]),
                "max_relative_difference": float((diff / scale).max()),
                "min_cosine": float(cos.min()),
            }
        )
    return rows


def run(data: Path, out: Path, cache: Path, *, cyclic: bool, input_size: int) -> dict:
    config = TrainConfig(
        data=str(data),
        out=str(out),
        model=MODEL,
        input_size=input_size,
        cyclic=cyclic,
        feature_cache=str(cache),
    )
    start = time.perf_counter()
    TransferTrainer(config, console=Console(stderr=True)).run()
    wall = time.perf_counter() - start
    meta = json.loads((out / "bundle" / "model.json").read_text())
    return {"wall_s": wall, "meta": meta}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--work", type=Path, default=None, help="runs and cache [a temp folder]")
    parser.add_argument("--sample", type=int, default=128, help="images for bf16 vs fp32")
    args = parser.parse_args()
    if not SOURCE.is_dir():
        raise SystemExit(f"real data not found at {SOURCE} (set FORAMFLOW_SHARED_DATA)")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_transfer_"))
    print(f"torch threads {torch.get_num_threads()}, CPU bf16: {cpu_has_bf16()}, work {work}")

    print(
        f"\nFeature extraction, bf16 autocast vs fp32 ({args.sample} images, {args.input_size} px)"
    )
    print("| head | fp32 images/s | bf16 images/s | bf16 / fp32 | max rel. diff | min cosine |")
    print("|---|---|---|---|---|---|")
    for row in bf16_comparison(args.input_size, args.sample):
        print(
            f"| {'cyclic' if row['cyclic'] else 'plain'} | {row['fp32_images_per_s']:.1f} | "
            f"{row['bf16_images_per_s']:.1f} | "
            f"{row['bf16_images_per_s'] / row['fp32_images_per_s']:.2f} | "
            f"{row['max_relative_difference']:.3f} | {row['min_cosine']:.5f} |",
            flush=True,
        )

    results = []
    for cyclic in (False, True):
        name = "cyclic" if cyclic else "plain"
        cache = work / f"cache_{name}"
        first = run(SOURCE, work / f"{name}_1", cache, cyclic=cyclic, input_size=args.input_size)
        print(f"{name}: done in {first['wall_s']:.0f} s", flush=True)
        again = None
        if not cyclic:  # the rerun's wall time is mostly preprocessing and ONNX evaluation
            again = run(
                SOURCE, work / f"{name}_2", cache, cyclic=cyclic, input_size=args.input_size
            )
            print(f"{name}: cached rerun {again['wall_s']:.0f} s", flush=True)
        results.append((name, first, again))

    print(f"\n{MODEL}, {args.input_size} px grey, ndsb_plankton_dev (classes ≥ 40 images)")
    print(
        "| head | val. accuracy | macro F1 | extraction images/s | extraction s | tail s "
        "| training s (extraction + tail) | run wall s | cached rerun wall s | epochs |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, first, again in results:
        meta, transfer = first["meta"], first["meta"]["transfer"]
        metrics, training = meta["metrics"], meta["training"]
        again_s = again["wall_s"] if again else None
        print(
            f"| {name} | {metrics['accuracy']:.4f} | {metrics['macro_f1']:.4f} | "
            f"{transfer['images_per_s']:.1f} | {transfer['extraction_s']:.0f} | "
            f"{transfer['tail_training_s']:.1f} | {training['time_s']:.0f} | "
            f"{first['wall_s']:.0f} | {f'{again_s:.0f}' if again else '–'} | "
            f"{training['epochs']} |"
        )
    n = first["meta"]["training_set"]
    print(
        f"\n{n['n_images']} images, {len(first['meta']['labels'])} classes, "
        f"{n['n_train']} training / {n['n_validation']} validation; "
        f"precision {first['meta']['transfer']['extractor']['precision']}"
    )


if __name__ == "__main__":
    main()
