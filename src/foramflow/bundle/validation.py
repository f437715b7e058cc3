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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foramflow.bundle.schema import MODEL_FILE, VALIDATION_FILE, BundleError
from foramflow.io.files import atomic_write
from foramflow.io.limits import MAX_ARRAY_BYTES, FileRefused, open_zip, read_npz

#: The quantiles of the top probabilities kept in model.json as the drift reference.
REFERENCE_QUANTILES = np.linspace(0.0, 1.0, 101)


def top_probability_reference(top_probabilities) -> list[float]:
    """Quantiles (0, 0.01, …, 1) of a set of top probabilities, small enough for model.json."""
    return [float(q) for q in np.quantile(np.asarray(top_probabilities), REFERENCE_QUANTILES)]


@dataclass(frozen=True)
class ValidationSet:
    """Labelled images' network outputs: ``labels`` (N,) index the bundle's classes."""

    labels: np.ndarray
    probabilities: np.ndarray  # (N, K), no temperature applied

    def __post_init__(self):
        labels, probs = np.asarray(self.labels), np.asarray(self.probabilities)
        if probs.ndim != 2 or labels.shape != (len(probs),):  # a caller's mistake: a file's
            # arrays are checked where it is read
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
        try:
            arrays = read_npz(path, path, ("labels", "probabilities"))
        except FileRefused as err:
            raise BundleError(str(err)) from None
        try:
            kept = ValidationSet(labels=arrays["labels"], probabilities=arrays["probabilities"])
        except ValueError as err:
            raise BundleError(f"{path}: {err}") from None
        write_validation(folder, kept, model_bytes)


def read_validation(bundle) -> ValidationSet | None:
    """The bundle's validation set; None when it has none.

    Raises :class:`~foramflow.bundle.schema.BundleError` for a file over the array cap of
    :mod:`foramflow.io.limits` (checked from the arrays' headers before they are loaded),
    that cannot be read, that another model.onnx wrote, or whose content cannot be used: it
    must match the bundle's classes, hold finite probabilities in [0, 1] whose rows sum to
    one, and labelled images of at least two classes.
    """
    where = bundle.location(VALIDATION_FILE)
    try:
        source = _source(bundle)
        if source is None:
            return None
        arrays = read_npz(
            source, where, ("labels", "probabilities", "model_sha256"), what="validation set"
        )
    except FileRefused as err:
        raise BundleError(str(err)) from None
    labels, probs, digest = arrays["labels"], arrays["probabilities"], arrays["model_sha256"]
    if digest.shape != () or str(digest) != model_digest(bundle.read_model(MODEL_FILE)):
        raise BundleError(f"{where}: describes another {MODEL_FILE}")
    check_validation(where, labels, probs, len(bundle.labels))
    return ValidationSet(labels=labels.astype(int), probabilities=probs.astype(float))


#: How far a row of probabilities may sum from one (float32 softmax, averaged members).
ROW_SUM_TOLERANCE = 1e-3


def check_validation(where: str, labels: np.ndarray, probs: np.ndarray, n_classes: int) -> None:
    """Refuse validation arrays that would give a wrong or blank abundance correction."""
    if probs.ndim != 2 or probs.shape[1] != n_classes or labels.shape != (len(probs),):
        raise BundleError(f"{where}: does not match the bundle's {n_classes} classes")
    if not np.issubdtype(labels.dtype, np.integer):
        raise BundleError(f"{where}: labels are {labels.dtype}, not class numbers")
    if not np.issubdtype(probs.dtype, np.floating):
        raise BundleError(f"{where}: probabilities are {probs.dtype}, not numbers in [0, 1]")
    if len(labels) == 0:
        raise BundleError(f"{where}: holds no validation images")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise BundleError(f"{where}: a label outside the bundle's {n_classes} classes")
    finite = np.isfinite(probs).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise BundleError(f"{where}: probabilities of image {row} are not finite numbers")
    outside = ((probs < 0) | (probs > 1)).any(axis=1)
    outside |= np.abs(probs.sum(axis=1, dtype=np.float64) - 1) > ROW_SUM_TOLERANCE
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise BundleError(f"{where}: probabilities of image {row} are not in [0, 1] summing to one")
    if len(np.unique(labels)) < 2:
        raise BundleError(f"{where}: labelled images of one class only; two are needed")


def _source(bundle) -> Path | bytes | None:
    """The validation file's path in a bundle folder, or its bytes from a zipped bundle."""
    if bundle.path.is_dir():
        path = bundle.path / VALIDATION_FILE
        return path if path.is_file() else None
    with open_zip(bundle.path) as archive:
        if VALIDATION_FILE not in archive.members:
            return None
        return archive.read(VALIDATION_FILE, limit=MAX_ARRAY_BYTES)
