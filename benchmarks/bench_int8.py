"""int8 copies of a training run's one-view network (``bundle_fast/``): validation top-1 with
7-bit and 8-bit weights, against fp32, and the time per image of each in ONNX Runtime and
OpenVINO (2 threads, batches of 64, the network alone).

    python benchmarks/bench_int8.py RUN [--save NAME]

RUN is a finished ``foramflow train`` folder of a top network; its validation images
(split.csv) are decoded as classify decodes them, and 256 training images spread over the
training split calibrate the copies, as training does.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from foramflow.bundle.decode import decode_batch
from foramflow.bundle.folder import Bundle
from foramflow.bundle.int8_exact import int8_exact
from foramflow.bundle.quantize import quantize_network
from saved_results import machine, save_result

BATCH = 64
THREADS = 2


def onnxruntime_runner(model: bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def openvino_runner(model: bytes, precision: str = "f32"):
    import openvino as ov

    core = ov.Core()
    settings = {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": THREADS,
        "INFERENCE_PRECISION_HINT": precision,
    }
    request = core.compile_model(core.read_model(model), "CPU", settings).create_infer_request()
    return lambda batch: request.infer({0: batch})[0].copy()


def predict(run, images: np.ndarray) -> np.ndarray:
    parts = [run(np.ascontiguousarray(images[i : i + BATCH])) for i in range(0, len(images), BATCH)]
    return np.concatenate(parts)


def ms_per_image(run, images: np.ndarray, repeats: int = 7) -> float:
    batch = np.ascontiguousarray(images[:BATCH])
    run(batch)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times) / len(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--save", metavar="NAME", help="also write benchmarks/results/NAME.json")
    args = parser.parse_args()
    who = machine()
    print(f"# {who['cpu']}, {who['cores']} cores, flags: {' '.join(who['flags'])}")
    bundle = Bundle.load(args.run / "bundle_fast")
    split = pd.read_csv(args.run / "split.csv")
    validation, training = split[split["part"] == "validation"], split[split["part"] == "train"]
    picked = np.unique(np.linspace(0, len(training) - 1, 256).astype(int))
    calibration, _ = decode_batch(list(training["path"].iloc[picked]), bundle.spec)
    images, errors = decode_batch(list(validation["path"]), bundle.spec)
    labels = np.array(
        [bundle.labels.index(c) for c, e in zip(validation["class"], errors) if e is None]
    )
    fp32 = bundle.read_model()
    models = {"fp32": fp32}
    with tempfile.TemporaryDirectory() as work:
        for bits in (7, 8):
            target = Path(work) / f"int8_{bits}.onnx"
            quantize_network(fp32, calibration, target, weight_bits=bits)
            models[f"int8, {bits}-bit weights"] = target.read_bytes()
    reference = None
    rows = []
    for name, model in models.items():
        ort_run = onnxruntime_runner(model)
        top1 = float((predict(ort_run, images).argmax(1) == labels).mean())
        reference = top1 if reference is None else reference
        timings = [ms_per_image(ort_run, images), ms_per_image(openvino_runner(model), images)]
        if name == "fp32":
            timings.append(ms_per_image(openvino_runner(model, "bf16"), images))
        rows.append(
            [name, f"{top1:.2%}", f"{100 * (top1 - reference):+.2f}",
             *(round(t, 2) for t in timings), *([""] * (3 - len(timings)))]
        )  # fmt: skip
        print(" | ".join(map(str, rows[-1])), flush=True)
    print(f"int8 products of 8-bit weights exact on this CPU: {int8_exact()}")
    if args.save:
        path = save_result(
            args.save,
            title=f"int8 copies of {args.run.name}'s one-view network, {len(labels)} "
            "validation images",
            columns=[
                "network",
                "validation top-1",
                "points against fp32",
                "ONNX Runtime ms/image",
                "OpenVINO ms/image",
                "OpenVINO bf16 ms/image",
            ],
            rows=rows,
            notes=f"{THREADS} threads, batches of {BATCH}, the network alone (no decoding). "
            f"8-bit weights exact on this CPU: {int8_exact()}.",
        )
        print(f"saved {path}")


if __name__ == "__main__":
    main()
