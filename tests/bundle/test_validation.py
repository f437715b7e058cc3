"""validation.npz: the validation split's network outputs, tied to the model.onnx."""

import shutil

import numpy as np
import pytest

from abundance.conftest import write_bundle
from foramflow.bundle import Bundle, BundleError, zip_bundle
from foramflow.bundle.validation import (
    ValidationSet,
    read_validation,
    restamp_validation,
    write_validation,
)


@pytest.fixture
def bundle_with_validation(tmp_path):
    bundle = Bundle.load(write_bundle(tmp_path / "bundle"))
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=12)
    kept = ValidationSet(labels=rng.integers(0, 3, 12), probabilities=probs)
    write_validation(bundle.path, kept, bundle.read_model())
    return bundle, kept


def test_the_validation_set_reads_back_from_a_folder_and_a_zip(bundle_with_validation, tmp_path):
    bundle, kept = bundle_with_validation
    zipped = Bundle.load(zip_bundle(bundle.path, tmp_path / "bundle.zip"))
    for loaded in (Bundle.load(bundle.path), zipped):
        read = read_validation(loaded)
        np.testing.assert_array_equal(read.labels, kept.labels)
        np.testing.assert_allclose(read.probabilities, kept.probabilities, rtol=1e-6)


def test_a_bundle_without_one_has_none(tmp_path):
    assert read_validation(Bundle.load(write_bundle(tmp_path / "bundle"))) is None


def test_a_validation_set_of_another_network_is_refused(bundle_with_validation):
    bundle, kept = bundle_with_validation
    write_validation(bundle.path, kept, b"another network")
    with pytest.raises(BundleError, match=r"describes another model\.onnx"):
        read_validation(bundle)


def test_a_re_export_of_the_same_weights_keeps_it(bundle_with_validation, tmp_path):
    bundle, kept = bundle_with_validation
    copy = tmp_path / "copy"
    shutil.copytree(bundle.path, copy)
    (copy / "model.onnx").write_bytes(b"re-exported bytes")
    with pytest.raises(BundleError, match="describes another"):
        read_validation(_loaded_without_check(copy))
    restamp_validation(copy, b"re-exported bytes")
    read = read_validation(_loaded_without_check(copy))
    np.testing.assert_array_equal(read.labels, kept.labels)


def _loaded_without_check(folder):
    """The bundle's description with a model.onnx that is not a network (never opened)."""
    from foramflow.bundle.folder import read_meta

    return Bundle(path=folder, meta=read_meta(folder))


@pytest.mark.parametrize(
    "labels, probs, message",
    [
        (np.zeros(4, int), np.full((4, 2), 0.5), "does not match the bundle's 3 classes"),
        (np.full(4, 5), np.full((4, 3), 1 / 3), "a label outside"),
    ],
)
def test_a_validation_set_that_does_not_fit_the_bundle_is_refused(tmp_path, labels, probs, message):
    bundle = Bundle.load(write_bundle(tmp_path / "bundle"))
    write_validation(bundle.path, ValidationSet(labels, probs), bundle.read_model())
    with pytest.raises(BundleError, match=message):
        read_validation(bundle)


def test_a_corrupt_file_is_named(tmp_path):
    bundle = Bundle.load(write_bundle(tmp_path / "bundle"))
    (bundle.path / "validation.npz").write_bytes(b"not an npz")
    with pytest.raises(BundleError, match=r"validation\.npz: not a readable validation set"):
        read_validation(bundle)
