"""Stratified, seeded train/validation split and the paper's class weights (method §5)."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from foramflow.errors import InvalidInput


def stratified_split(
    labels: np.ndarray, *, val_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation): every class keeps the same share in both parts."""
    if not 0.0 < val_fraction < 1.0:
        raise InvalidInput(f"validation fraction must lie in (0, 1), not {val_fraction}")
    index = np.arange(len(labels))
    train, val = train_test_split(
        index, test_size=val_fraction, stratify=labels, random_state=seed, shuffle=True
    )
    return np.sort(train), np.sort(val)


def loss_weights(counts: np.ndarray, scheme: str) -> np.ndarray:
    """Per-class loss weights for ``scheme``: "clamped" (:func:`class_weights`) or "none".

    "none" suits a goal of overall accuracy on a set whose class mix is the natural one; the
    clamped weights trade some of it for the recall of rare classes.
    """
    if scheme == "none":
        return np.ones(len(counts))
    if scheme == "clamped":
        return class_weights(counts)
    raise InvalidInput(f"class weights must be 'clamped' or 'none', not {scheme!r}")


def class_weights(counts: np.ndarray, *, lower: float = 0.1, upper: float = 10.0) -> np.ndarray:
    """w_i = (geometric mean of all class counts) / k_i, clamped to [lower, upper].

    Rare classes weigh more in the loss so the network does not ignore them; the clamp stops
    a class of a handful of images from dominating.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if np.any(counts <= 0):
        raise InvalidInput("every class needs at least one image to be weighted")
    geometric_mean = np.exp(np.mean(np.log(counts)))
    return np.clip(geometric_mean / counts, lower, upper)
