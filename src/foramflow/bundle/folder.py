"""Bundle folders and zips: loading, writing, changing.

Layout::

    BUNDLE/
      model.onnx               preprocessed image batch (N, C, S, S) float32 in,
                               probabilities out
      model.json               the description (:class:`~foramflow.bundle.schema.BundleMeta`):
                               labels, preprocessing, thresholds, calibration, metrics,
                               validation confusion matrix, training-set hash, versions
      model.nhwc.onnx          the same network as ParticleTrieur and MISO run it: IR 8,
                               opset 17, image batch (N, S, S, C) in (:mod:`foramflow.bundle.nhwc`)
      network_info.xml         the bundle described as MISO describes its networks, naming
                               model.nhwc.onnx (:mod:`foramflow.bundle.network_info`)
      model.int8.onnx          optional: an int8 copy of the network (classify --precision)
      reference_features.npz   transfer-learning bundles: vectors of the labelled images
      validation.npz           the validation split's outputs and true classes, for the
                               abundance step (:mod:`foramflow.bundle.validation`)
      calibration/             coverage-accuracy curves of ``foramflow calibrate``

A bundle is checked when it is loaded (see :func:`~foramflow.bundle.schema.parse_meta`) and
when its network is opened (see :mod:`foramflow.bundle.engine`). Two fields may be absent,
and the bundle's :attr:`Bundle.notes` say so: without ``threshold`` the default 0.8
applies, without ``input`` the input is the one the preprocessing gives.

This module needs only numpy, pydantic, Pillow and ONNX Runtime.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from foramflow.bundle.network_info import foreign_network, network_info_xml
from foramflow.bundle.schema import (
    CALIBRATION_DIR,
    DEFAULT_THRESHOLD,
    INT8_FILE,
    META_FILE,
    MODEL_FILE,
    NETWORK_INFO_FILE,
    NHWC_FILE,
    ONE_VIEW_BUNDLE,
    ONE_VIEW_FILE,
    ONE_VIEW_INT8_FILE,
    PRECISION_RECORDS,
    RUN_BUNDLE,
    BundleError,
    BundleMeta,
    PrecisionCheck,
    parse_meta,
)
from foramflow.imaging.preprocess import PreprocessSpec
from foramflow.io.files import atomic_write, write_json_atomic
from foramflow.io.limits import (
    MAX_JSON_BYTES,
    MAX_MEMBER_BYTES,
    FileRefused,
    open_zip,
    parse_json,
    read_bytes,
    read_json,
    read_json_object,
)

#: The files every bundle writer writes itself; other files of a bundle are copied as they are.
OWN_FILES = (
    META_FILE, MODEL_FILE, NHWC_FILE, NETWORK_INFO_FILE, INT8_FILE, ONE_VIEW_FILE,
    ONE_VIEW_INT8_FILE,
)  # fmt: skip

logger = logging.getLogger("foramflow")


@dataclass(frozen=True)
class Network:
    """A model file of a bundle: its bytes, where it lies (as messages name it), the hash of
    what decides its predictions (:meth:`Bundle.decisive_hash`), and the bundle's
    calibration temperature."""

    model: bytes
    where: str
    hash: str
    temperature: float


@dataclass(frozen=True)
class _File:
    """A model file as read: what it was when read (see :meth:`Bundle._stamp`), its bytes
    and their SHA-256 digest."""

    stamp: tuple | None
    data: bytes
    hash: object  # hashlib's sha256 object, copied to extend


@dataclass
class Bundle:
    """A loaded model bundle; its network runs in :class:`~foramflow.bundle.engine.Engine`."""

    path: Path
    meta: BundleMeta
    notes: list[str] = field(default_factory=list)  # defaults taken for absent fields
    _model_bytes: bytes | None = field(default=None, repr=False)
    _engine: object = field(default=None, repr=False)
    _files: dict[str, _File] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(cls, path: str | Path) -> Bundle:
        """Load a bundle folder, or a .zip holding its files."""
        path = Path(path)
        if path.is_file() and zipfile.is_zipfile(path):
            return cls._load_zip(path)
        meta_path, model_path = path / META_FILE, path / MODEL_FILE
        for required in (meta_path, model_path):
            if not required.is_file():
                raise BundleError(
                    foreign_network(path)
                    or f"{path}: not a model bundle ({required.name} is missing)"
                )
        meta = read_meta(path)
        return cls(path=path, meta=meta, notes=meta.defaults_taken())

    @classmethod
    def _load_zip(cls, path: Path) -> Bundle:
        """Members are checked before they are read (:mod:`foramflow.io.limits`): a name
        held twice is refused, and none is read past its declared size or the cap."""
        try:
            with open_zip(path) as archive:
                for required in (META_FILE, MODEL_FILE):
                    if required not in archive.members:
                        raise BundleError(f"{path}: not a model bundle ({required} is missing)")
                text = archive.read(META_FILE, limit=MAX_JSON_BYTES)
                data = parse_json(text, archive.location(META_FILE), what=META_FILE)
                meta = parse_meta(data, Path(archive.location(META_FILE)))
                model = archive.read(MODEL_FILE)
        except FileRefused as err:
            raise BundleError(str(err)) from None
        return cls(path=path, meta=meta, _model_bytes=model, notes=meta.defaults_taken())

    @property
    def labels(self) -> list[str]:
        return list(self.meta.labels)

    @property
    def spec(self) -> PreprocessSpec:
        return self.meta.preprocessing

    @property
    def input_size(self) -> int:
        return self.meta.input_size

    @property
    def threshold(self) -> float:
        value = self.meta.threshold
        return DEFAULT_THRESHOLD if value is None else float(value)

    @property
    def class_thresholds(self) -> dict[str, float]:
        return dict(self.meta.class_thresholds or {})

    @property
    def temperature(self) -> float:
        calibration = self.meta.calibration
        value = calibration.temperature if calibration else None
        return 1.0 if value is None else float(value)

    def faster_sibling(self) -> Bundle | None:
        """The same training run's bundle that reads each image once (``bundle_fast/`` beside
        this ``bundle/``), where there is one that loads."""
        if self.path.name != RUN_BUNDLE or not self.path.is_dir():
            return None
        try:
            return Bundle.load(self.path.parent / ONE_VIEW_BUNDLE)
        except BundleError:
            return None

    @property
    def meta_location(self) -> str:
        """Where model.json lies, as messages name it."""
        return self.location(META_FILE)

    def location(self, name: str = MODEL_FILE) -> str:
        """Where a file of the bundle lies, as messages name it."""
        if self.path.is_dir() or Path(name).is_absolute():
            return str(self.path / name)
        return f"{self.path} ({name})"

    def network(self, name: str = MODEL_FILE) -> Network:
        """One model file of the bundle (``name``), read once, as an engine runs it."""
        model = self.read_model(name)
        return Network(model, self.location(name), self.decisive_hash(name), self.temperature)

    def decisive_hash(self, name: str = MODEL_FILE) -> str:
        """SHA-256 over what decides the predictions of the model file ``name``: its bytes,
        the labels, preprocessing and calibration temperature (not the metrics or notes
        that model.json also holds)."""
        decisive = {
            "labels": self.labels,
            "preprocessing": self.spec.to_dict(),
            "temperature": self.temperature,
        }
        digest = self._file(name).hash.copy()
        digest.update(json.dumps(decisive, sort_keys=True).encode())
        return digest.hexdigest()

    def file_sha256(self, name: str = MODEL_FILE) -> str:
        """SHA-256 of the bytes of one model file of the bundle."""
        return self._file(name).hash.hexdigest()

    def read_model(self, name: str = MODEL_FILE) -> bytes:
        """The bytes of one model file of the bundle folder or zip; an absolute ``name`` is a
        file kept outside the bundle (see :mod:`foramflow.bundle.records`)."""
        return self._file(name).data

    def _file(self, name: str) -> _File:
        """A model file, read and hashed once while it stays the file it was (the checks of
        a classify run's start ask for the same few files and hashes some thirty times)."""
        stamp = self._stamp(name)
        kept = self._files.get(name)
        if kept is not None and stamp is not None and kept.stamp == stamp:
            return kept
        if name == MODEL_FILE and self._model_bytes is not None:
            data = self._model_bytes
        else:
            data = self._read_file(name)
        read = _File(stamp, data, hashlib.sha256(data))
        if stamp is not None:
            self._files[name] = read
        return read

    def _stamp(self, name: str) -> tuple | None:
        """What tells a file from its next version: size, time and inode (a zip: its own)."""
        inside = self.path.is_dir() or Path(name).is_absolute()
        try:
            info = (self.path / name if inside else self.path).stat()
        except OSError:
            return None
        return info.st_size, info.st_mtime_ns, info.st_ino

    def _read_file(self, name: str) -> bytes:
        try:
            if self.path.is_dir() or Path(name).is_absolute():
                return read_bytes(self.path / name, limit=MAX_MEMBER_BYTES, what="model")
            with open_zip(self.path) as archive:
                return archive.read(name)
        except FileRefused as err:
            raise BundleError(str(err)) from None

    def engine(self):
        """The fp32 :class:`~foramflow.bundle.engine.Engine`, opened (and checked against
        model.json) on first use."""
        if self._engine is None:
            from foramflow.bundle.engine import Engine

            self._engine = Engine(self, precision="fp32")
        return self._engine

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (N, K) for a preprocessed batch (N, C, S, S), calibrated."""
        return self.engine().predict(batch)

    def attach(self, **fields) -> None:
        """Set ``fields`` of this description for this session only (nothing is written)."""
        self.meta = self.meta.merged(**fields)

    def update(self, **fields) -> None:
        """Write ``fields`` into the bundle's model.json (merged with what the file holds
        now, not with what was attached for this session) and into this description."""
        if not self.path.is_dir():
            raise BundleError(f"{self.path}: unpack the .zip to change the bundle")
        write_meta(self.path, Bundle.load(self.path).meta.merged(**fields))
        self.attach(**fields)

    @property
    def calibration_dir(self) -> Path:
        """Where ``foramflow calibrate`` writes its curves by default."""
        return self.path / CALIBRATION_DIR


def update_bundle_meta(path: str | Path, **fields) -> BundleMeta:
    """Merge ``fields`` into a bundle folder's model.json (e.g. calibration, thresholds)."""
    bundle = Bundle.load(path)
    bundle.update(**fields)
    return bundle.meta


def read_meta(folder: str | Path) -> BundleMeta:
    """The description of a bundle folder, without its network."""
    path = description_path(folder)
    try:
        data = read_json(path, what=META_FILE)
    except FileRefused as err:
        raise BundleError(str(err)) from None
    return parse_meta(data, path)


def description_path(folder: str | Path) -> Path:
    """The model.json of a bundle folder."""
    return Path(folder) / META_FILE


def write_meta(folder: Path, meta: BundleMeta) -> None:
    """Write model.json, and network_info.xml where the folder has one, so the two agree."""
    write_json_atomic(folder / META_FILE, meta.to_json())
    if (folder / NETWORK_INFO_FILE).is_file():
        _write_network_info(folder, meta)


def write_bundle(
    folder: str | Path,
    meta: BundleMeta,
    onnx_bytes: bytes,
    *,
    extra_files: Iterable[Path] = (),
) -> Path:
    """Write a bundle folder: model.onnx, model.json, model.nhwc.onnx and network_info.xml
    (for ParticleTrieur and MISO), and copies of ``extra_files`` (reference features, say)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / MODEL_FILE, lambda tmp: tmp.write_bytes(onnx_bytes))
    write_json_atomic(folder / META_FILE, meta.to_json())
    _write_nhwc_model(folder, onnx_bytes)
    _write_network_info(folder, meta)
    for path in extra_files:
        shutil.copy2(path, folder / path.name)
    return folder


def _write_nhwc_model(folder: Path, onnx_bytes: bytes) -> None:
    """model.nhwc.onnx; a network that cannot take that form still makes a bundle, which
    only foramflow runs."""
    # imported here: the onnx package takes over a second to import (its ml_dtypes), which
    # every classify run would pay for a file only training writes
    from foramflow.bundle.nhwc import NhwcError, nhwc_model

    try:
        nhwc = nhwc_model(onnx_bytes)
    except NhwcError as err:
        (folder / NHWC_FILE).unlink(missing_ok=True)
        logger.warning(f"{folder / MODEL_FILE}: no {NHWC_FILE} for ParticleTrieur and MISO: {err}")
        return
    atomic_write(folder / NHWC_FILE, lambda tmp: tmp.write_bytes(nhwc))


def _write_network_info(folder: Path, meta: BundleMeta) -> None:
    """network_info.xml names model.nhwc.onnx, or model.onnx in a bundle without one."""
    protobuf = NHWC_FILE if (folder / NHWC_FILE).is_file() else MODEL_FILE
    text = network_info_xml(meta, protobuf)
    atomic_write(folder / NETWORK_INFO_FILE, lambda tmp: tmp.write_text(text))


def other_files(folder: str | Path) -> list[Path]:
    """The files of a bundle folder that the bundle writers do not write themselves."""
    return [
        path
        for path in sorted(Path(folder).iterdir())
        if path.is_file() and path.name not in OWN_FILES
    ]


def read_precision_records(folder: str | Path) -> dict[str, PrecisionCheck]:
    """The precision records kept for a bundle in a folder outside it (see
    :mod:`foramflow.bundle.records`), with their files as absolute paths in that folder;
    none when the folder holds no readable ones."""
    try:
        stored = read_json_object(Path(folder) / META_FILE)
    except FileRefused:
        return {}
    records = {}
    for name in PRECISION_RECORDS:
        try:
            record = PrecisionCheck.model_validate(stored[name])
        except (TypeError, KeyError, ValueError):
            continue
        records[name] = record.with_file_in(Path(folder))
    return records


def write_precision_records(folder: str | Path, **records: PrecisionCheck) -> None:
    """Keep precision records in a folder outside the bundle, beside those it holds, as a
    model.json of records (files named relative to the folder)."""
    path = Path(folder) / META_FILE
    try:
        stored = read_json_object(path)
    except FileRefused:
        stored = {}
    if not isinstance(stored, dict):
        stored = {}
    kept = {name: stored[name] for name in PRECISION_RECORDS if isinstance(stored.get(name), dict)}
    write_json_atomic(path, kept | {name: record.to_json() for name, record in records.items()})


def zip_bundle(folder: str | Path, archive: str | Path) -> Path:
    """Pack a bundle folder's files into one .zip (the files at its top level)."""
    archive = Path(archive)
    archive.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zipped:
            for path in sorted(Path(folder).iterdir()):
                if path.is_file():
                    zipped.write(path, path.name)

    atomic_write(archive, write)
    return archive
