"""Bundles from elsewhere: zips, model.json and validation.npz are capped and checked before
use, and a bad one is refused in one line naming the file."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
import zipfile

import numpy as np
import pytest

from abundance.conftest import write_bundle
from bombs import npz_bomb, zip_bytes
from foramflow.bundle import Bundle, BundleError, zip_bundle
from foramflow.bundle.validation import ValidationSet, read_validation, write_validation


def test_a_zip_claiming_a_gigabyte_model_is_refused_before_it_is_read(tmp_path):
    """About a megabyte holding a true gigabyte of model.onnx: refused from its header."""
    meta = (write_bundle(tmp_path / "b") / "model.json").read_bytes()
    path = tmp_path / "bomb.zip"
    path.write_bytes(zip_bytes([("model.json", meta, 0), ("model.onnx", b"", 2**30)]))
    assert path.stat().st_size < 2 * 2**20
    tracemalloc.start()
    try:
        with pytest.raises(
            BundleError, match=r"bomb\.zip \(model\.onnx\): member of 1024 MiB, over the limit"
        ):
            Bundle.load(path)
        assert tracemalloc.get_traced_memory()[1] < 8 * 2**20
    finally:
        tracemalloc.stop()


def test_a_zip_with_two_descriptions_is_refused(tmp_path):
    folder = write_bundle(tmp_path / "b")
    path = zip_bundle(folder, tmp_path / "two.zip")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("other/model.json", json.dumps({"labels": ["x", "y"]}))
    with pytest.raises(BundleError, match=r"two\.zip: the zip holds model\.json twice"):
        Bundle.load(path)


@pytest.mark.parametrize("depth", [200, 50_000])
def test_a_deeply_nested_model_json_is_refused_in_one_line(tmp_path, depth):
    folder = write_bundle(tmp_path / "b")
    meta = json.loads((folder / "model.json").read_text())
    text = json.dumps(meta)[:-1] + ', "notes": ' + "[" * depth + "]" * depth + "}"
    (folder / "model.json").write_text(text)
    with pytest.raises(BundleError, match=r"b/model\.json: model\.json nested .*deep"):
        Bundle.load(folder)
    zipped = zip_bundle(folder, tmp_path / "b.zip")
    with pytest.raises(BundleError, match=r"b\.zip \(model\.json\): model\.json nested"):
        Bundle.load(zipped)


@pytest.fixture
def bundle(tmp_path):
    return Bundle.load(write_bundle(tmp_path / "bundle"))


def good_validation():
    probs = np.tile([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]], (4, 1))
    return np.tile([0, 1, 2], 4), probs


def spoiled(kind: str):
    labels, probs = good_validation()
    if kind == "nan":
        probs[5, 2] = np.nan
    elif kind == "inf":
        probs[5, 2] = np.inf
    elif kind == "negative":
        probs[5] = [1.2, -0.1, -0.1]
    elif kind == "not summing to one":
        probs[5] = [0.5, 0.5, 0.5]
    elif kind == "one class":
        labels[:] = 2
    elif kind == "empty":
        labels, probs = labels[:0], probs[:0]
    elif kind == "float labels":
        labels = labels.astype(float)
    return labels, probs


@pytest.mark.parametrize(
    "kind, message",
    [
        ("nan", "probabilities of image 5 are not finite numbers"),
        ("inf", "probabilities of image 5 are not finite numbers"),
        ("negative", r"probabilities of image 5 are not in \[0, 1\] summing to one"),
        ("not summing to one", r"probabilities of image 5 are not in \[0, 1\] summing to one"),
        ("one class", "labelled images of one class only; two are needed"),
        ("empty", "holds no validation images"),
        ("float labels", "labels are float64, not class numbers"),
    ],
)
def test_a_validation_set_that_cannot_be_used_is_refused(bundle, kind, message):
    labels, probs = spoiled(kind)
    np.savez(
        bundle.path / "validation.npz",
        labels=labels,
        probabilities=probs,
        model_sha256=np.array(hashlib.sha256(bundle.read_model()).hexdigest()),
    )
    with pytest.raises(BundleError, match=rf"bundle/validation\.npz: {message}"):
        read_validation(bundle)


def test_a_usable_validation_set_reads_back_exactly(bundle):
    labels, probs = good_validation()
    write_validation(bundle.path, ValidationSet(labels, probs), bundle.read_model())
    read = read_validation(bundle)
    np.testing.assert_array_equal(read.labels, labels)
    np.testing.assert_array_equal(read.probabilities, probs.astype(np.float32))


def test_a_validation_npz_claiming_fifty_million_rows_is_refused_from_its_headers(bundle, tmp_path):
    """Half a megabyte that holds 600 MB of arrays: refused before any is loaded, in a
    folder and in a zipped bundle."""
    digest = ((), "<U64")
    data = npz_bomb(
        {
            "labels": ((50_000_000,), "<i4"),
            "probabilities": ((50_000_000, 3), "<f4"),
            "model_sha256": digest,
        }
    )
    (bundle.path / "validation.npz").write_bytes(data)
    zipped = Bundle.load(zip_bundle(bundle.path, tmp_path / "bundle.zip"))
    tracemalloc.start()
    try:
        for loaded, where in (
            (bundle, r"bundle/validation\.npz"),
            (zipped, r"\(validation\.npz\)"),
        ):
            with pytest.raises(
                BundleError, match=rf"{where}: arrays of 762.9 MiB, over the limit of 256 MiB"
            ):
                read_validation(loaded)
        assert tracemalloc.get_traced_memory()[1] < 16 * 2**20
    finally:
        tracemalloc.stop()
