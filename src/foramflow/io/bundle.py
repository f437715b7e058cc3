"""The model bundle: a folder anyone can use to classify, without foramflow's training code.

Layout::

    BUNDLE/
      model.onnx         preprocessed image batch (N, C, S, S) float32 in, probabilities out
      model.json         labels, input, preprocessing spec, thresholds, calibration, metrics,
                         validation confusion matrix, training-set hash, software versions
      network_info.xml   the same model described in the MISO / ParticleTrieur schema

A bundle is checked when it is loaded and when its network is opened: model.json must name
the labels and the preprocessing, and the network must read what the preprocessing gives
and have one output per label; otherwise :class:`BundleError` says which file is wrong and
how. Two fields may be absent, and the bundle's :attr:`Bundle.notes` say so: without
``threshold`` the default 0.8 applies, without ``input`` the input is the one the
preprocessing gives.

This module needs only numpy, Pillow and ONNX Runtime.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from foramflow.classify.decisions import validate_threshold
from foramflow.errors import ForamflowError
from foramflow.imaging.preprocess import PreprocessSpec, load_and_preprocess
from foramflow.io.files import write_json_atomic
from foramflow.io.images import ImageReadError

BUNDLE_FORMAT = "foramflow-bundle/1"
MODEL_FILE = "model.onnx"
META_FILE = "model.json"
NETWORK_INFO_FILE = "network_info.xml"
DEFAULT_THRESHOLD = 0.8


class BundleError(ForamflowError, ValueError):
    """A bundle is missing a file, holds an invalid description, or a network that cannot be
    loaded or does not match its description; the message names the file."""


@dataclass
class Bundle:
    """A loaded model bundle; :meth:`predict_batch` runs it with ONNX Runtime."""

    path: Path
    meta: dict
    _model_bytes: bytes | None = field(default=None, repr=False)
    _session: object = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)  # defaults taken for absent fields

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
            meta = json.loads(meta_path.read_bytes())
        except OSError as err:
            raise BundleError(f"{meta_path}: cannot read ({err.strerror or err})") from None
        except ValueError as err:  # invalid JSON or text
            raise BundleError(f"{meta_path}: invalid JSON ({err})") from None
        return cls(path=path, meta=meta, notes=check_description(meta, meta_path))

    @classmethod
    def _load_zip(cls, path: Path) -> Bundle:
        try:
            with zipfile.ZipFile(path) as archive:
                names = {Path(name).name: name for name in archive.namelist()}
                for required in (META_FILE, MODEL_FILE):
                    if required not in names:
                        raise BundleError(f"{path}: not a model bundle ({required} is missing)")
                text, model = archive.read(names[META_FILE]), archive.read(names[MODEL_FILE])
        except (OSError, zipfile.BadZipFile) as err:
            raise BundleError(f"{path}: cannot read the zip ({err})") from None
        try:
            meta = json.loads(text)
        except ValueError as err:
            raise BundleError(f"{path}: invalid {META_FILE} ({err})") from None
        where = Path(f"{path} ({META_FILE})")
        return cls(path=path, meta=meta, _model_bytes=model, notes=check_description(meta, where))

    @property
    def labels(self) -> list[str]:
        return list(self.meta["labels"])

    @property
    def spec(self) -> PreprocessSpec:
        return PreprocessSpec.from_dict(self.meta["preprocessing"])

    @property
    def threshold(self) -> float:
        value = self.meta.get("threshold")
        return DEFAULT_THRESHOLD if value is None else float(value)

    @property
    def class_thresholds(self) -> dict[str, float]:
        return dict(self.meta.get("class_thresholds") or {})

    @property
    def temperature(self) -> float:
        return float((self.meta.get("calibration") or {}).get("temperature", 1.0))

    def model_location(self, name: str = MODEL_FILE) -> str:
        """Where a model file of the bundle lies, as messages name it."""
        if self.path.is_dir() or Path(name).is_absolute():
            return str(self.path / name)
        return f"{self.path} ({name})"

    def verify(self) -> None:
        """Open the network once and check it against model.json, so that a broken one is
        refused before any work (the session is not kept)."""
        import onnxruntime as ort

        source = self._model_bytes or str(self.path / MODEL_FILE)
        open_session(source, ort.SessionOptions(), self, self.model_location())

    def session(self, threads: int | None = None):
        """The ONNX Runtime session, created (and checked against model.json) on first use."""
        if self._session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            source = self._model_bytes or str(self.path / MODEL_FILE)
            self._session = open_session(source, options, self, self.model_location())
        return self._session

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (N, K) for a preprocessed batch (N, C, S, S).

        When the bundle holds a fitted temperature the probabilities are recalibrated:
        softmax(log p / T).
        """
        session = self.session()
        input_name = session.get_inputs()[0].name
        probs = session.run(None, {input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        check_probabilities(probs, self, self.model_location())
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
                    arrays.append(_load_image(path, spec))
                except ImageReadError as err:
                    errors[i] = err.reason
            probs = iter(self.predict_batch(np.stack(arrays)) if arrays else [])
            for i, path in enumerate(chunk):
                if i in errors:
                    yield path, None, errors[i]
                else:
                    yield path, next(probs), None


def _load_image(path: Path, spec: PreprocessSpec) -> np.ndarray:
    """One preprocessed image; anything that is not a readable image is an ImageReadError."""
    if path.is_dir():
        raise ImageReadError(path, "a folder, not an image file")
    try:
        return load_and_preprocess(path, spec)
    except ImageReadError:
        raise
    except Exception as err:  # one odd file must not stop the others
        raise ImageReadError(path, f"cannot read image ({type(err).__name__}: {err})") from err


def check_description(meta, where: Path) -> list[str]:
    """Refuse a model.json that classification cannot rely on; return notes on the defaults
    taken for the fields it may omit."""
    if not isinstance(meta, dict):
        raise BundleError(f"{where}: not a bundle description (a JSON object)")
    if meta.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{where}: unknown bundle format {meta.get('format')!r}")
    for key, what in (("labels", "the class names"), ("preprocessing", "how images are prepared")):
        if key not in meta:
            raise BundleError(f"{where}: no '{key}' ({what})")
    labels = _check_labels(meta["labels"], where)
    spec = _check_preprocessing(meta["preprocessing"], where)
    _check_class_thresholds(meta.get("class_thresholds"), labels, where)
    return [*_check_input(meta.get("input"), spec, where), *_check_threshold(meta, where)]


def _check_labels(labels, where: Path) -> list[str]:
    if not (isinstance(labels, list) and labels and all(isinstance(x, str) and x for x in labels)):
        raise BundleError(f"{where}: labels must be a list of class names, not {labels!r}")
    seen = set()
    for label in labels:
        if label in seen:
            raise BundleError(f"{where}: label {label!r} is listed twice")
        seen.add(label)
    return labels


def _check_preprocessing(description, where: Path) -> PreprocessSpec:
    try:
        return PreprocessSpec.from_dict(description)
    except KeyError as err:
        raise BundleError(f"{where}: invalid preprocessing (no {err})") from None
    except (TypeError, ValueError, AttributeError) as err:
        raise BundleError(f"{where}: invalid preprocessing ({err})") from None


def _check_input(declared, spec: PreprocessSpec, where: Path) -> list[str]:
    if declared is None:
        taken = _shape(spec.channels, spec.size)
        return [f"model.json has no input: taking {taken} from the preprocessing"]
    try:
        channels, size = int(declared["channels"]), int(declared["size"])
    except (TypeError, KeyError, ValueError):
        raise BundleError(f"{where}: input must give size and channels, not {declared!r}") from None
    if (channels, size) != (spec.channels, spec.size):
        raise BundleError(
            f"{where}: input is {_shape(channels, size)} but the preprocessing gives "
            f"{_shape(spec.channels, spec.size)}"
        )
    return []


def _check_threshold(meta: dict, where: Path) -> list[str]:
    value = meta.get("threshold")
    if value is None:
        return [f"model.json has no threshold: using {DEFAULT_THRESHOLD}"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BundleError(f"{where}: threshold must be a number, not {value!r}")
    try:
        validate_threshold(value)
    except ValueError as err:
        raise BundleError(f"{where}: {err}") from None
    return []


def _check_class_thresholds(values, labels: list[str], where: Path) -> None:
    if values is None:
        return
    if not isinstance(values, dict):
        raise BundleError(f"{where}: class_thresholds must map labels to thresholds")
    for label, value in values.items():
        if label not in labels:
            raise BundleError(f"{where}: class threshold for unknown label {label!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BundleError(f"{where}: class threshold of {label!r} must be a number")
        try:
            validate_threshold(value, what=f"class threshold of {label!r}")
        except ValueError as err:
            raise BundleError(f"{where}: {err}") from None


def _shape(channels: int, size: int) -> str:
    return f"{size} × {size} px, {channels} channel{'' if channels == 1 else 's'}"


def open_session(model: bytes | str, options, bundle: Bundle, where: str):
    """An ONNX Runtime session for one of the bundle's networks, checked against model.json.

    A file that ONNX Runtime cannot load (truncated, corrupt, not ONNX) is a BundleError."""
    import onnxruntime as ort

    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ONNX Runtime's errors share no base class of their own
        raise BundleError(f"{where}: cannot load the network ({_first_line(err)})") from None
    check_network(session.get_inputs()[0].shape, session.get_outputs()[0].shape, bundle, where)
    return session


def check_network(input_shape, output_shape, bundle: Bundle, where: str) -> None:
    """Refuse a network whose input is not what the preprocessing gives, or whose number of
    outputs is not the number of labels (dimensions left open are checked on use)."""
    spec, n_labels = bundle.spec, len(bundle.labels)
    if len(input_shape) != 4:
        raise BundleError(f"{where}: the network input must be (N, C, S, S), not {input_shape}")
    fixed = [d for d in input_shape[1:] if isinstance(d, int)]
    if len(fixed) == 3 and tuple(fixed) != (spec.channels, spec.size, spec.size):
        raise BundleError(
            f"{where}: the network expects {_shape(fixed[0], fixed[2])} but the preprocessing "
            f"in model.json gives {_shape(spec.channels, spec.size)}"
        )
    outputs = output_shape[-1] if output_shape else None
    if isinstance(outputs, int) and outputs != n_labels:
        raise BundleError(
            f"{where}: model.json lists {n_labels} labels but the network has {outputs} outputs"
        )


def check_probabilities(probs: np.ndarray, bundle: Bundle, where: str) -> None:
    """The check of :func:`check_network` for a network whose output width is left open."""
    n_labels = len(bundle.labels)
    if probs.ndim != 2 or probs.shape[1] != n_labels:
        raise BundleError(
            f"{where}: model.json lists {n_labels} labels but the network gives outputs of "
            f"shape {probs.shape}"
        )


def _first_line(err: Exception) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


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
