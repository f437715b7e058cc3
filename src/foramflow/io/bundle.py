"""The model bundle: a folder anyone can use to classify, without foramflow's training code.

Layout::

    BUNDLE/
      model.onnx         preprocessed image batch (N, C, S, S) float32 in, probabilities out
      model.json         labels, input, preprocessing spec, thresholds, calibration, metrics,
                         validation confusion matrix, training-set hash, software versions
      network_info.xml   the same model described in the MISO / ParticleTrieur schema

This module needs only numpy, Pillow and ONNX Runtime.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from foramflow.imaging.preprocess import PreprocessSpec, load_and_preprocess
from foramflow.io.files import write_json_atomic
from foramflow.io.images import ImageReadError

BUNDLE_FORMAT = "foramflow-bundle/1"
MODEL_FILE = "model.onnx"
META_FILE = "model.json"
NETWORK_INFO_FILE = "network_info.xml"
DEFAULT_THRESHOLD = 0.8


class BundleError(ValueError):
    """A bundle folder is missing a file or holds an invalid description."""


@dataclass
class Bundle:
    """A loaded model bundle; :meth:`predict_batch` runs it with ONNX Runtime."""

    path: Path
    meta: dict
    _model_bytes: bytes | None = field(default=None, repr=False)
    _session: object = field(default=None, repr=False)

    @classmethod
    def load(cls, path: str | Path) -> Bundle:
        """Load a bundle folder, or a .zip holding its files."""
        path = Path(path)
        if path.is_file() and zipfile.is_zipfile(path):
            return cls._load_zip(path)
        meta_path, model_path = path / META_FILE, path / MODEL_FILE
        for required in (meta_path, model_path):
            if not required.is_file():
                raise BundleError(f"{path}: not a model bundle ({required.name} is missing)")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as err:
            raise BundleError(f"{meta_path}: invalid JSON ({err})") from err
        _check_format(meta, meta_path)
        return cls(path=path, meta=meta)

    @classmethod
    def _load_zip(cls, path: Path) -> Bundle:
        with zipfile.ZipFile(path) as archive:
            names = {Path(name).name: name for name in archive.namelist()}
            for required in (META_FILE, MODEL_FILE):
                if required not in names:
                    raise BundleError(f"{path}: not a model bundle ({required} is missing)")
            try:
                meta = json.loads(archive.read(names[META_FILE]))
            except json.JSONDecodeError as err:
                raise BundleError(f"{path}: invalid {META_FILE} ({err})") from err
            _check_format(meta, path)
            return cls(path=path, meta=meta, _model_bytes=archive.read(names[MODEL_FILE]))

    @property
    def labels(self) -> list[str]:
        return list(self.meta["labels"])

    @property
    def spec(self) -> PreprocessSpec:
        return PreprocessSpec.from_dict(self.meta["preprocessing"])

    @property
    def threshold(self) -> float:
        return float(self.meta.get("threshold", DEFAULT_THRESHOLD))

    @property
    def class_thresholds(self) -> dict[str, float]:
        return dict(self.meta.get("class_thresholds") or {})

    @property
    def temperature(self) -> float:
        return float((self.meta.get("calibration") or {}).get("temperature", 1.0))

    def session(self, threads: int | None = None):
        """The ONNX Runtime session, created on first use."""
        if self._session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            options.log_severity_level = 3
            source = self._model_bytes or str(self.path / MODEL_FILE)
            self._session = ort.InferenceSession(
                source, options, providers=["CPUExecutionProvider"]
            )
        return self._session

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (N, K) for a preprocessed batch (N, C, S, S).

        When the bundle holds a fitted temperature the probabilities are recalibrated:
        softmax(log p / T).
        """
        session = self.session()
        input_name = session.get_inputs()[0].name
        probs = session.run(None, {input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        return apply_temperature(probs, self.temperature)

    def predict_paths(
        self, paths: Sequence[str | Path], batch_size: int = 64
    ) -> Iterable[tuple[Path, np.ndarray | None, str | None]]:
        """Yield (path, probabilities or None, error or None) for each path, in order."""
        spec = self.spec
        for start in range(0, len(paths), batch_size):
            chunk = [Path(p) for p in paths[start : start + batch_size]]
            arrays, errors = [], {}
            for i, path in enumerate(chunk):
                try:
                    arrays.append(load_and_preprocess(path, spec))
                except ImageReadError as err:
                    errors[i] = err.reason
            probs = iter(self.predict_batch(np.stack(arrays)) if arrays else [])
            for i, path in enumerate(chunk):
                if i in errors:
                    yield path, None, errors[i]
                else:
                    yield path, next(probs), None


def _check_format(meta: dict, where: Path) -> None:
    if meta.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{where}: unknown bundle format {meta.get('format')!r}")


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Rescale probabilities by a temperature: softmax(log p / T); T = 1 is a no-op."""
    if temperature == 1.0:
        return probs
    logits = np.log(np.clip(probs, 1e-12, None)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def update_bundle_meta(path: str | Path, **fields) -> dict:
    """Merge ``fields`` into a bundle's model.json (e.g. calibration, class_thresholds)."""
    bundle = Bundle.load(path)
    if not bundle.path.is_dir():
        raise BundleError(f"{path}: unpack the .zip to change the bundle")
    bundle.meta.update(fields)
    write_json_atomic(bundle.path / META_FILE, bundle.meta)
    return bundle.meta
