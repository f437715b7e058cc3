import numpy as np
import pytest

from foramflow.data.split import class_weights, loss_weights, stratified_split


def test_class_weights_known_vector():
    counts = np.array([10, 100, 1000])  # geometric mean = 100
    assert np.allclose(class_weights(counts), [10.0, 1.0, 0.1])


def test_class_weights_are_clamped():
    counts = np.array([1, 100, 10000])  # geometric mean 100 → 100, 1, 0.01 before the clamp
    assert np.allclose(class_weights(counts), [10.0, 1.0, 0.1])
    with pytest.raises(ValueError):
        class_weights(np.array([0, 5]))


def test_loss_weights_by_scheme():
    counts = np.array([10, 100, 1000])
    assert np.allclose(loss_weights(counts, "clamped"), [10.0, 1.0, 0.1])
    assert np.allclose(loss_weights(counts, "none"), [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="clamped"):
        loss_weights(counts, "balanced")


def test_split_is_stratified_seeded_and_disjoint():
    labels = np.repeat([0, 1, 2], [50, 100, 250])
    train, val = stratified_split(labels, val_fraction=0.2, seed=3)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(labels)
    assert np.array_equal(np.bincount(labels[val]), [10, 20, 50])
    again = stratified_split(labels, val_fraction=0.2, seed=3)
    assert np.array_equal(val, again[1])
    other = stratified_split(labels, val_fraction=0.2, seed=4)
    assert not np.array_equal(val, other[1])
