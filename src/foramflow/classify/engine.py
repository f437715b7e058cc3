"""The inference engine: a bundle's ONNX model in ONNX Runtime, in fp32 or int8.

A bundle may carry an int8 copy of its network, recorded in model.json under ``"int8"``
(see :mod:`foramflow.classify.quantize`). Precision "auto" uses it when present.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from foramflow.io.bundle import MODEL_FILE, Bundle, BundleError, apply_temperature

PRECISIONS = ("auto", "fp32", "int8")
INT8_FIELD = "int8"


def available_cores() -> int:
    """Cores this process may run on (respects CPU affinity, e.g. under Slurm)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def resolve_precision(bundle: Bundle, precision: str) -> tuple[str, Path]:
    """(precision, model file) that ``precision`` means for this bundle."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    int8 = bundle.meta.get(INT8_FIELD) or {}
    int8_path = bundle.path / int8["file"] if int8.get("file") else None
    has_int8 = int8_path is not None and int8_path.is_file()
    if precision == "int8" and not has_int8:
        raise BundleError(f"{bundle.path}: the bundle holds no int8 model")
    if precision == "int8" or (precision == "auto" and has_int8):
        return "int8", int8_path
    return "fp32", bundle.path / MODEL_FILE


def bundle_hash(bundle: Bundle, model_path: Path) -> str:
    """SHA-256 over what decides the predictions: the model file(s), labels, preprocessing
    and calibration temperature (not the metrics or notes that model.json also holds)."""
    digest = hashlib.sha256()
    for path in sorted(model_path.parent.glob(model_path.name + "*")):  # + external data
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    decisive = {
        "labels": bundle.labels,
        "preprocessing": bundle.meta["preprocessing"],
        "temperature": bundle.temperature,
    }
    digest.update(json.dumps(decisive, sort_keys=True).encode())
    return digest.hexdigest()


class Engine:
    """Runs a bundle's network on preprocessed batches; probabilities include calibration."""

    def __init__(self, bundle: Bundle, *, precision: str = "auto", threads: int | None = None):
        import onnxruntime as ort

        self.bundle = bundle
        self.precision, self.model_path = resolve_precision(bundle, precision)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or available_cores()
        options.inter_op_num_threads = 1
        # Decoding runs in other processes on the same cores: do not busy-wait between ops.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(self.model_path), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self._session.get_inputs()[0].name

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (N, K) float32 for a preprocessed batch (N, C, S, S)."""
        feed = {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}
        probs = self._session.run(None, feed)[0]
        return apply_temperature(probs, self.bundle.temperature).astype(np.float32, copy=False)
