"""The validation split's probabilities, kept in the bundle for the abundance step.

model.json's confusion matrix says how often each class is taken for another by its top
class. The abundance corrections that use every image's probabilities need more: the
probabilities themselves, with the true class, of labelled images the network never trained
on. ``validation.npz`` keeps them as the network outputs them (before any temperature, so a
later calibration applies to them as it does to classify's), with the SHA-256 of the
model.onnx that gave them: a file that describes another network is refused.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foramflow.bundle.schema import MODEL_FILE, VALIDATION_FILE, BundleError
from foramflow.io.files import atomic_write


@dataclass(frozen=True)
class ValidationSet:
    """Labelled images' network outputs: ``labels`` (N,) index the bundle's classes."""

    labels: np.ndarray
    probabilities: np.ndarray  # (N, K), no temperature applied

    def __post_init__(self):
        labels, probs = np.asarray(self.labels), np.asarray(self.probabilities)
        if probs.ndim != 2 or labels.shape != (len(probs),):
            raise ValueError(f"labels {labels.shape} do not match probabilities {probs.shape}")

    @property
    def n_classes(self) -> int:
        return self.probabilities.shape[1]


def model_digest(model_bytes: bytes) -> str:
    return hashlib.sha256(model_bytes).hexdigest()


def write_validation(folder: str | Path, validation: ValidationSet, model_bytes: bytes) -> Path:
    """Write ``folder/validation.npz`` for the network ``model_bytes``."""
    path = Path(folder) / VALIDATION_FILE

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.savez_compressed(
                handle,
                labels=np.asarray(validation.labels, np.int32),
                probabilities=np.asarray(validation.probabilities, np.float32),
                model_sha256=np.array(model_digest(model_bytes)),
            )

    atomic_write(path, write)
    return path


def restamp_validation(folder: str | Path, model_bytes: bytes) -> None:
    """Mark a copied validation set as the outputs of ``model_bytes``: for a re-export of
    the same weights, whose ONNX bytes may differ."""
    path = Path(folder) / VALIDATION_FILE
    if path.is_file():
        with np.load(path, allow_pickle=False) as arrays:
            kept = ValidationSet(labels=arrays["labels"], probabilities=arrays["probabilities"])
        write_validation(folder, kept, model_bytes)


def read_validation(bundle) -> ValidationSet | None:
    """The bundle's validation set; None when it has none.

    Raises :class:`~foramflow.bundle.schema.BundleError` for a file that cannot be read,
    that does not match the bundle's classes, or that another model.onnx wrote.
    """
    where = bundle.location(VALIDATION_FILE)
    data = _read_bytes(bundle)
    if data is None:
        return None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            labels, probs = arrays["labels"], arrays["probabilities"]
            digest = str(arrays["model_sha256"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise BundleError(f"{where}: not a readable validation set ({err})") from None
    if digest != model_digest(bundle.read_model(MODEL_FILE)):
        raise BundleError(f"{where}: describes another {MODEL_FILE}")
    n_classes = len(bundle.labels)
    if probs.ndim != 2 or probs.shape[1] != n_classes or labels.shape != (len(probs),):
        raise BundleError(f"{where}: does not match the bundle's {n_classes} classes")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise BundleError(f"{where}: a label outside the bundle's {n_classes} classes")
    return ValidationSet(labels=labels.astype(int), probabilities=probs.astype(float))


def _read_bytes(bundle) -> bytes | None:
    if bundle.path.is_dir():
        path = bundle.path / VALIDATION_FILE
        return path.read_bytes() if path.is_file() else None
    with zipfile.ZipFile(bundle.path) as archive:
        members = {Path(member).name: member for member in archive.namelist()}
        return archive.read(members[VALIDATION_FILE]) if VALIDATION_FILE in members else None
