"""An int8 copy of a bundle's network, for more speed on a CPU where int8 arithmetic pays.

ONNX Runtime static quantisation, QDQ format: int8 weights per output channel, uint8
activations with ranges calibrated (min/max) on a few hundred preprocessed images.

Weights use all 8 bits where this CPU computes them exactly
(:mod:`foramflow.bundle.int8_exact`), else 7 (onnxruntime's ``reduce_range``), and the
record says which. x86 CPUs without VNNI add uint8 × int8 products in pairs into 16 bits,
which full-range weights overflow; 7-bit weights are exact there, but cost accuracy: the
default network's one view lost 0.7 points in int8 with 7-bit weights and 0.3 with 8-bit
ones (docs/decisions.md). A copy with 8-bit weights runs only on CPUs that compute it
exactly, wherever it was made.

The dense head (Gemm/MatMul) and the softmax stay in fp32: they cost about 2 % of the
compute, and quantising them moves the class probabilities enough to flip close calls. So
does the stem, the first convolution, which reads the image itself: in int8 it cost a
network about a point of top-1, and it is one of some fifty convolutions.

The copy is written beside model.onnx and recorded in the bundle's description
(:attr:`BundleMeta.int8 <foramflow.bundle.schema.BundleMeta.int8>`; for a bundle that cannot
be written, elsewhere: :mod:`foramflow.bundle.records`). The record holds its file, the
method, the numbers of calibration and check images, and the top-1 agreement: the share of
check images (not used for calibration) whose top class is the same as with the fp32 model.
A copy made at training time (:func:`quantize_on_validation`) is calibrated on training
images and also records its top-1 and fp32's on the validation split, which alone decide
whether ``--precision auto`` uses it. model.onnx itself is never changed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foramflow.bundle.decode import decode_batch
from foramflow.bundle.engine import MIN_CHECK_IMAGES, Engine, sha256
from foramflow.bundle.folder import Bundle
from foramflow.bundle.int8_exact import int8_exact
from foramflow.bundle.predict import predict_timed
from foramflow.bundle.schema import INT8_FILE, BundleError, PrecisionCheck
from foramflow.errors import ForamflowError

FP32_OPS = ("Gemm", "MatMul", "Softmax")


def method(weight_bits: int) -> str:
    return (
        f"onnxruntime quantize_static, QDQ, per-channel {weight_bits}-bit int8 weights, uint8 "
        f"activations, MinMax calibration; the stem convolution, {', '.join(FP32_OPS)} kept "
        "in fp32"
    )


def quantize_bundle(
    bundle_path: str | Path,
    images: Sequence[str | Path],
    *,
    n_calibration: int = 256,
    n_check: int = 512,
    batch_size: int = 32,
) -> dict:
    """Write an int8 copy of the bundle's network calibrated on ``images`` into the bundle
    folder, record it in model.json and return the record as model.json holds it."""
    bundle = Bundle.load(bundle_path)
    if not bundle.path.is_dir():
        raise BundleError(f"{bundle.path}: an int8 model can only be added to a bundle folder")
    record = quantize_into(
        bundle,
        images,
        bundle.path,
        n_calibration=n_calibration,
        n_check=n_check,
        batch_size=batch_size,
    )
    bundle.update(int8=record)
    return record.to_json()


def quantize_into(
    bundle: Bundle,
    images: Sequence[str | Path],
    folder: Path,
    *,
    n_calibration: int = 256,
    n_check: int = 512,
    batch_size: int = 32,
) -> PrecisionCheck:
    """Write an int8 copy of the bundle's network calibrated on ``images`` into ``folder``;
    return its record (its file named relative to ``folder``).

    Images are taken evenly spread over ``images`` (so every sample folder contributes);
    calibration and check images do not overlap. Unreadable images are skipped.
    """
    picked = spread(list(images), n_calibration + n_check)
    batch = preprocess_images(picked, bundle)
    if len(batch) < 2:
        where = os.path.commonpath([str(p) for p in picked]) if picked else "no images given"
        raise ForamflowError(
            f"{where}: {len(batch)} readable image(s); an int8 model needs at least 2, some "
            f"to calibrate on and the others ({MIN_CHECK_IMAGES} for a telling check) to "
            "compare with fp32"
        )
    n_cal = min(n_calibration, len(batch) // 2)
    order = np.random.default_rng(0).permutation(len(batch))
    calibration, check = batch[order[:n_cal]], batch[order[n_cal:][:n_check]]

    fp32 = Engine(bundle, precision="fp32")
    bits = quantize_network(
        bundle.read_model(), calibration, folder / INT8_FILE, batch_size=batch_size
    )
    record = PrecisionCheck(
        file=INT8_FILE,
        method=method(bits),
        weight_bits=bits,
        calibration_images=len(calibration),
        check_images=len(check),
        model_sha256=bundle.file_sha256(),
        file_sha256=sha256((folder / INT8_FILE).read_bytes()),
    )
    bundle.attach(int8=record.with_file_in(folder))
    int8 = Engine(bundle, precision="int8")
    agreement, _ = compare_engines(fp32, int8, check, batch_size=batch_size)
    return record.model_copy(update={"top1_agreement": agreement})


@dataclass(frozen=True)
class CheckedInt8:
    """An int8 copy checked on the validation split: its record, its probabilities there
    (without the bundle's temperature) and its speed."""

    record: PrecisionCheck
    probabilities: np.ndarray
    ms_per_image: float


def quantize_on_validation(
    bundle: Bundle,
    calibration: np.ndarray,
    images: np.ndarray,
    labels: np.ndarray,
    fp32_probabilities: np.ndarray,
    *,
    file: str = INT8_FILE,
) -> CheckedInt8:
    """Write ``file``, an int8 copy of a bundle folder's network calibrated on
    ``calibration`` (preprocessed training images), and check it on the validation split
    (``images``, ``labels``) against fp32's ``fp32_probabilities`` there.

    The record holds both top-1 figures, which decide whether "auto" may use the copy
    (:func:`foramflow.bundle.engine.validated`); it is attached to ``bundle`` (not written
    to model.json: the caller decides which copy the bundle keeps).
    """
    bits = quantize_network(bundle.read_model(), calibration, bundle.path / file)
    record = PrecisionCheck(
        file=file,
        method=method(bits),
        weight_bits=bits,
        calibration_images=len(calibration),
        model_sha256=bundle.file_sha256(),
        file_sha256=sha256((bundle.path / file).read_bytes()),
    )
    bundle.attach(int8=record)
    timed = predict_timed(Engine(bundle, precision="int8", calibrated=False), images)
    labels = np.asarray(labels)
    predicted, fp32 = timed.probabilities.argmax(1), fp32_probabilities.argmax(1)
    record = record.model_copy(
        update={
            "check_images": len(labels),
            "top1_agreement": float((predicted == fp32).mean()),
            "validation_images": len(labels),
            "validation_top1": float((predicted == labels).mean()),
            "fp32_validation_top1": float((fp32 == labels).mean()),
        }
    )
    bundle.attach(int8=record)
    return CheckedInt8(record, timed.probabilities, timed.ms_per_image)


def quantize_network(
    model: bytes,
    calibration: np.ndarray,
    target: Path,
    *,
    batch_size: int = 32,
    weight_bits: int | None = None,
) -> int:
    """Write to ``target`` an int8 copy of the ONNX ``model`` whose activation ranges are
    calibrated on ``calibration`` (preprocessed images); return the bits of its weights:
    ``weight_bits``, by default 8 where this CPU computes them exactly and 7 elsewhere."""
    if weight_bits is None:
        weight_bits = 8 if int8_exact() else 7
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.registry import QDQRegistry
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = onnx.load_model_from_string(model).graph.input[0].name
    calibration = np.asarray(calibration, dtype=np.float32)  # training keeps its images in fp16

    class _Batches(CalibrationDataReader):
        def __init__(self):
            self._batches = iter(
                {input_name: calibration[i : i + batch_size]}
                for i in range(0, len(calibration), batch_size)
            )

        def get_next(self):
            return next(self._batches, None)

    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".quantize.") as work:
        source = Path(work) / "source.onnx"
        source.write_bytes(model)
        prepared = Path(work) / "prepared.onnx"
        # ONNX's own shape inference serves a CNN; onnxruntime's symbolic one (made for
        # transformers) fails on the fine-tuned top's graph of turns
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantized = Path(work) / target.name
        quantize_static(
            str(prepared),
            str(quantized),
            _Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=weight_bits == 7,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=[op for op in QDQRegistry if op not in FP32_OPS],
            nodes_to_exclude=_stem(prepared),
        )
        os.replace(quantized, target)
    return weight_bits


def _stem(model_path: Path) -> list[str]:
    """The name of the network's first convolution, the one that reads the image."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    convolutions = [node for node in graph.node if node.op_type == "Conv"]
    return [convolutions[0].name] if convolutions and convolutions[0].name else []


def compare_engines(
    a: Engine, b: Engine, batch: np.ndarray, *, batch_size: int = 64
) -> tuple[float, float]:
    """(share of images whose top class is the same under both engines, largest difference
    of any class probability)."""
    pa, pb = paired_predictions(a, b, batch, batch_size=batch_size)
    return float((pa.argmax(1) == pb.argmax(1)).mean()), float(np.abs(pa - pb).max())


def paired_predictions(
    a: Engine, b: Engine, batch: np.ndarray, *, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Both engines' probabilities for ``batch``, computed a few images at a time."""
    parts = [
        (a.predict(batch[i : i + batch_size]), b.predict(batch[i : i + batch_size]))
        for i in range(0, len(batch), batch_size)
    ]
    return np.concatenate([p for p, _ in parts]), np.concatenate([q for _, q in parts])


def spread(items: list, n: int) -> list:
    if len(items) <= n:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def preprocess_images(paths: Sequence[str | Path], bundle: Bundle) -> np.ndarray:
    """The readable ones of ``paths``, preprocessed; the others are left out."""
    return decode_batch(paths, bundle.spec)[0]
