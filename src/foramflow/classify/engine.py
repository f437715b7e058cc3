"""The inference engine: a bundle's ONNX model in ONNX Runtime, in fp32 or int8.

The bundle may be a folder or a zip. It may carry an int8 copy of its network, recorded in
model.json under ``"int8"`` (see :mod:`foramflow.classify.quantize`); precision "auto" uses it
when its recorded top-1 agreement with fp32 is at least 99.5 %.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from foramflow.io.bundle import MODEL_FILE, Bundle, BundleError, apply_temperature

PRECISIONS = ("auto", "fp32", "int8")
INT8_FIELD = "int8"
# "auto" takes the int8 model only when it agrees this well with fp32 (top-1, recorded).
MIN_INT8_AGREEMENT = 0.995


def available_cores() -> int:
    """Cores this process may run on (respects CPU affinity, e.g. under Slurm)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def resolve_precision(bundle: Bundle, precision: str) -> tuple[str, str]:
    """(precision, model file name) that ``precision`` means for this bundle."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    int8 = bundle.meta.get(INT8_FIELD) or {}
    if precision == "int8" and not int8.get("file"):
        raise BundleError(f"{bundle.path}: the bundle holds no int8 model")
    faithful = int8.get("file") and int8.get("top1_agreement", 0.0) >= MIN_INT8_AGREEMENT
    if precision == "int8" or (precision == "auto" and faithful):
        return "int8", int8["file"]
    return "fp32", MODEL_FILE


def read_model(bundle: Bundle, name: str) -> bytes:
    """The bytes of one model file of a bundle folder or zip."""
    if bundle.path.is_dir():
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


class Engine:
    """Runs a bundle's network on preprocessed batches; probabilities include calibration."""

    def __init__(self, bundle: Bundle, *, precision: str = "auto", threads: int | None = None):
        import onnxruntime as ort

        self.bundle = bundle
        self.precision, self.model_file = resolve_precision(bundle, precision)
        model = read_model(bundle, self.model_file)
        self.hash = bundle_hash(bundle, model)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or available_cores()
        options.inter_op_num_threads = 1
        # Decoding runs in other processes on the same cores: do not busy-wait between ops.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.input_name = self._session.get_inputs()[0].name

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (N, K) float32 for a preprocessed batch (N, C, S, S)."""
        feed = {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}
        probs = self._session.run(None, feed)[0]
        return apply_temperature(probs, self.bundle.temperature).astype(np.float32, copy=False)
