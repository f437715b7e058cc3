"""Transfer learning on real plankton images, with and without cyclic layers, on this machine.

For each head (EfficientNet-Lite0, cyclic and not), one complete ``TransferTrainer`` run on
../shared/data/ndsb_plankton_dev (classes of ≥ 40 images, 80/20 split, ALRS) with an empty
feature cache; for the plain head, the same run again, which finds every vector in the
cache (the cyclic rerun differs only in its longer ONNX evaluation). Prints one
table: validation accuracy and macro F1 (of the exported ONNX bundle), feature-extraction
images/s, extraction time, tail training time, total training time (extraction + tail, as
METHOD §6 counts it), the wall time of the whole run (reading, preprocessing, export and
evaluation included), and the wall time of the cached rerun.

Before that, feature-extraction speed on a sample of the images: the plain and cyclic heads
and ``efficientnet_lite0_top``'s frozen bottom, each in PyTorch fp32 and bf16 autocast and in
ONNX Runtime fp32, interleaved so that all share the machine's load (the full runs are many
minutes apart, and on a shared machine their speeds are not comparable), and how far bf16
and ONNX Runtime move the vectors.

Usage: python benchmarks/bench_transfer.py [--input-size 128] [--work DIR] [--sample 64]
       [--repeats 5] [--speed-only]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from foramflow.bundle.engine import cpu_has_bf16
from foramflow.cli.console import RichProgress
from foramflow.data.arrays import preprocess_all
from foramflow.imaging.preprocess import PreprocessSpec
from foramflow.models.backbones import efficientnet_lite0_weights
from foramflow.models.registry import create_model
from foramflow.models.transfer import TransferHead
from foramflow.training.config import TrainConfig
from foramflow.training.frozen_features import FrozenFeatures, extract_features
from foramflow.training.transfer import TransferTrainer

DATA = Path(os.environ.get("FORAMFLOW_SHARED_DATA", Path(__file__).parents[2] / "shared" / "data"))
SOURCE = DATA / "ndsb_plankton_dev"
MODEL = "efficientnet_lite0_tl"


def extraction_speed(input_size: int, n: int, repeats: int) -> list[dict]:
    """Three frozen networks (the plain and cyclic transfer heads, the top's bottom), each
    run three ways (PyTorch fp32 and bf16 autocast, ONNX Runtime fp32 as
    :class:`FrozenFeatures` runs it on a CPU in fp32), interleaved in every repetition so that
    all share the machine's load; medians over the repetitions."""
    every = sorted(SOURCE.glob("*/*.jpg"))
    paths = every[:: max(1, len(every) // n)][:n]
    images, _, _ = preprocess_all(paths, PreprocessSpec(size=input_size, channels=1))
    device = torch.device("cpu")
    weights = efficientnet_lite0_weights()
    networks = {
        name: TransferHead(
            "efficientnet_lite0", input_size=input_size, cyclic=cyclic, weights=weights
        )
        for name, cyclic in (("plain head", False), ("cyclic head", True))
    }
    top = create_model(
        "efficientnet_lite0_top",
        n_classes=2,
        input_size=input_size,
        channels=1,
        weights=str(weights),
    )
    networks["top's bottom"] = top.bottom
    ways = {}
    for name, network in networks.items():
        network = network.eval().to(memory_format=torch.channels_last)
        for bf16 in (False, True):
            ways[name, f"pytorch {'bf16' if bf16 else 'fp32'}"] = partial(
                extract_features, network, device=device, bf16=bf16
            )
        ways[name, "onnxruntime fp32"] = FrozenFeatures(network, device=device, bf16=False)
    times: dict[tuple, list[float]] = {way: [] for way in ways}
    vectors = {}
    for extract in ways.values():  # warm-up: kernels built, the ONNX model exported
        extract(images[:8])
    order = list(ways)
    for r in range(repeats):
        for way in order if r % 2 else order[::-1]:
            start = time.perf_counter()
            vectors[way] = ways[way](images)
            times[way].append(time.perf_counter() - start)
    rows = []
    for name in networks:
        fp32 = vectors[name, "pytorch fp32"]
        row = {"network": name}
        for way in ("pytorch fp32", "pytorch bf16", "onnxruntime fp32"):
            row[way] = len(images) / statistics.median(times[name, way])
        bf16 = vectors[name, "pytorch bf16"]
        cos = (fp32 * bf16).sum(1) / (np.linalg.norm(fp32, axis=1) * np.linalg.norm(bf16, axis=1))
        row["min_cosine_bf16"] = float(cos.min())
        row["onnxruntime_max_error"] = float(
            np.abs(vectors[name, "onnxruntime fp32"] - fp32).max() / np.abs(fp32).max()
        )
        rows.append(row)
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
    TransferTrainer(config, progress=RichProgress()).run()
    wall = time.perf_counter() - start
    meta = json.loads((out / "bundle" / "model.json").read_text())
    return {"wall_s": wall, "meta": meta}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--work", type=Path, default=None, help="runs and cache [a temp folder]")
    parser.add_argument("--sample", type=int, default=64, help="images for the speed table")
    parser.add_argument("--repeats", type=int, default=5, help="repetitions of the speed table")
    parser.add_argument("--speed-only", action="store_true", help="only the speed table")
    args = parser.parse_args()
    if not SOURCE.is_dir():
        raise SystemExit(f"real data not found at {SOURCE} (set FORAMFLOW_SHARED_DATA)")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_transfer_"))
    print(f"torch threads {torch.get_num_threads()}, CPU bf16: {cpu_has_bf16()}, work {work}")

    print(
        f"\nFeature extraction on {args.sample} images, {args.input_size} px, side by side "
        f"(median of {args.repeats})"
    )
    print(
        "| network | PyTorch fp32 images/s | PyTorch bf16 | ONNX Runtime fp32 "
        "| ONNX Runtime / PyTorch fp32 | min cosine bf16 vs fp32 | ONNX Runtime's largest "
        "difference from PyTorch fp32, of the largest value |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in extraction_speed(args.input_size, args.sample, args.repeats):
        print(
            f"| {row['network']} | {row['pytorch fp32']:.1f} | {row['pytorch bf16']:.1f} | "
            f"{row['onnxruntime fp32']:.1f} | "
            f"{row['onnxruntime fp32'] / row['pytorch fp32']:.2f} | "
            f"{row['min_cosine_bf16']:.4f} | {row['onnxruntime_max_error']:.1e} |",
            flush=True,
        )
    if args.speed_only:
        return

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
