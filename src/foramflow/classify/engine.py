"""The inference engine: a bundle's ONNX model in fp32, bf16 or int8.

* fp32 and int8 run in ONNX Runtime. The bundle may carry an int8 copy of its network,
  recorded in model.json under ``"int8"`` (see :mod:`foramflow.classify.quantize`).
* bf16 runs model.onnx itself in OpenVINO with bfloat16 arithmetic, on CPUs that compute
  bf16 natively (AVX-512 BF16 or AMX); elsewhere it would be slower than fp32. Its top-1
  agreement with fp32 is measured once per bundle and recorded under ``"bf16"``, with the
  largest change of a probability; images whose two best classes are closer than twice that
  change are recomputed in fp32, so that close calls come out as in fp32.

Precision "auto" takes bf16 where the CPU has it, else int8, each only when its recorded
top-1 agreement with fp32 is at least 99.5 %, and fp32 otherwise.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from foramflow.io.bundle import (
    MODEL_FILE,
    Bundle,
    BundleError,
    apply_temperature,
    check_probabilities,
    open_session,
)

PRECISIONS = ("auto", "fp32", "bf16", "int8")
INT8_FIELD = "int8"
BF16_FIELD = "bf16"
# "auto" takes bf16 or int8 only when it agrees this well with fp32 (top-1, recorded).
MIN_AGREEMENT = 0.995


def available_cores() -> int:
    """Cores this process may run on (respects CPU affinity, e.g. under Slurm)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


@functools.cache
def cpu_has_bf16() -> bool:
    """True where OpenVINO can compute in bf16 natively on this CPU (asked once)."""
    try:
        import openvino as ov

        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # no OpenVINO, or it cannot start here
        return False


def faithful(bundle: Bundle, field: str) -> bool:
    """Whether the bundle records a top-1 agreement with fp32 of at least 99.5 % for ``field``."""
    return (bundle.meta.get(field) or {}).get("top1_agreement", 0.0) >= MIN_AGREEMENT


def resolve_precision(bundle: Bundle, precision: str) -> tuple[str, str]:
    """(precision, model file name) that ``precision`` means for this bundle on this CPU."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    int8 = bundle.meta.get(INT8_FIELD) or {}
    if precision == "int8" and not int8.get("file"):
        raise BundleError(f"{bundle.path}: the bundle holds no int8 model")
    if precision == "bf16" or (
        precision == "auto" and faithful(bundle, BF16_FIELD) and cpu_has_bf16()
    ):
        return "bf16", MODEL_FILE
    usable_int8 = int8.get("file") and faithful(bundle, INT8_FIELD)
    if precision == "int8" or (precision == "auto" and usable_int8):
        return "int8", int8["file"]
    return "fp32", MODEL_FILE


def read_model(bundle: Bundle, name: str) -> bytes:
    """The bytes of one model file of a bundle folder or zip; an absolute ``name`` is a
    file kept outside the bundle (see :mod:`foramflow.classify.records`)."""
    if bundle.path.is_dir() or Path(name).is_absolute():
        try:
            return (bundle.path / name).read_bytes()
        except OSError as err:
            raise BundleError(f"{bundle.path / name}: cannot read model ({err})") from None
    with zipfile.ZipFile(bundle.path) as archive:
        members = {Path(member).name: member for member in archive.namelist()}
        if name not in members:
            raise BundleError(f"{bundle.path}: the zip holds no {name}")
        return archive.read(members[name])


def bundle_hash(bundle: Bundle, model: bytes) -> str:
    """SHA-256 over what decides the predictions: the model, labels, preprocessing and
    calibration temperature (not the metrics or notes that model.json also holds)."""
    decisive = {
        "labels": bundle.labels,
        "preprocessing": bundle.meta["preprocessing"],
        "temperature": bundle.temperature,
    }
    digest = hashlib.sha256(model)
    digest.update(json.dumps(decisive, sort_keys=True).encode())
    return digest.hexdigest()


def recheck_margin(bundle: Bundle) -> float:
    """bf16 results whose top two probabilities differ by less than this are recomputed in
    fp32: a flip of the top class needs the two to move towards each other by the margin,
    each by at most the largest change seen in the bundle's bf16 check (0 without one)."""
    return 2.0 * (bundle.meta.get(BF16_FIELD) or {}).get("max_probability_change", 0.0)


def recheck_close_calls(
    probs: np.ndarray, batch: np.ndarray, margin: float, exact
) -> tuple[np.ndarray, int]:
    """Replace the rows of ``probs`` whose top two are within ``margin`` by ``exact(rows)``;
    returns the probabilities and how many rows were recomputed."""
    if margin <= 0 or probs.shape[1] < 2:
        return probs, 0
    top_two = np.partition(probs, -2, axis=1)[:, -2:]
    close = np.flatnonzero(top_two[:, 1] - top_two[:, 0] < margin)
    if len(close):
        probs = probs.copy()
        probs[close] = exact(np.ascontiguousarray(batch[close]))
    return probs, len(close)


class Engine:
    """Runs a bundle's network on preprocessed batches; probabilities include calibration."""

    def __init__(self, bundle: Bundle, *, precision: str = "auto", threads: int | None = None):
        self.bundle = bundle
        self.precision, self.model_file = resolve_precision(bundle, precision)
        model = read_model(bundle, self.model_file)
        self.hash = bundle_hash(bundle, model)
        self.where = bundle.model_location(self.model_file)
        threads = threads or available_cores()
        self.margin = 0.0
        self.n_rechecked = 0
        if self.precision == "bf16":
            self._run = _openvino_bf16(model, threads, self.where)
            self.margin = recheck_margin(bundle)
            if self.margin > 0:
                self._exact = _onnxruntime(model, threads, bundle, self.where)
        else:
            self._run = _onnxruntime(model, threads, bundle, self.where)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (N, K) float32 for a preprocessed batch (N, C, S, S)."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        probs = self._run(batch)
        check_probabilities(probs, self.bundle, self.where)
        if self.margin > 0:
            probs, n = recheck_close_calls(probs, batch, self.margin, self._exact)
            self.n_rechecked += n
        return apply_temperature(probs, self.bundle.temperature).astype(np.float32, copy=False)


def _onnxruntime(model: bytes, threads: int, bundle: Bundle, where: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Decoding runs in other processes on the same cores: do not busy-wait between ops.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = open_session(model, options, bundle, where)
    input_name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {input_name: batch})[0]


def _openvino_bf16(model: bytes, threads: int, where: str):
    import openvino as ov

    core = ov.Core()
    settings = {
        "INFERENCE_PRECISION_HINT": "bf16",
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": threads,
    }
    try:
        compiled = core.compile_model(core.read_model(model), "CPU", settings)
    except Exception as err:  # OpenVINO's errors share no base class of their own
        message = (str(err).strip() or type(err).__name__).splitlines()[0]
        raise BundleError(f"{where}: cannot load the network in OpenVINO ({message})") from None
    request = compiled.create_infer_request()
    return lambda batch: request.infer({0: batch})[0].copy()
