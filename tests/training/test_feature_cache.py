"""A damaged feature cache is repaired, never trained on: bad rows and databases rebuilt."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

import foramflow.training.frozen_features as frozen_features
from foramflow.progress import Recorded
from foramflow.training.feature_cache import (
    DATABASE_FILE,
    EXTRACTOR_FILE,
    ExtractorSpec,
    FeatureCache,
    FeatureCacheError,
)

DIM = 4
SPEC = ExtractorSpec("efficientnet_lite0", "0" * 64, {"params": {"size": 4}}, False, "none", "fp32")
HASHES = [f"{i:064x}" for i in range(6)]


def extract(batch: np.ndarray) -> np.ndarray:
    """A frozen 'network': an image's vector is its first DIM pixels."""
    return np.asarray(batch, np.float32).reshape(len(batch), -1)[:, :DIM]


def images() -> np.ndarray:
    return np.random.default_rng(0).random((len(HASHES), 1, 4, 4), dtype=np.float32)


def expected() -> np.ndarray:
    return images().reshape(len(HASHES), -1)[:, :DIM].astype(np.float16).astype(np.float32)


@pytest.fixture
def filled(tmp_path):
    """A cache root holding every image's vector, as a clean earlier run left it."""
    with open_cache(tmp_path, []) as cache:
        _, computed = features(cache)
        assert computed == len(HASHES)
    return tmp_path


def open_cache(root, notes: list[str]) -> FeatureCache:
    return FeatureCache.open(root, SPEC, dim=DIM, weights_path="w", notify=notes.append)


def features(cache):
    vectors, computed, _ = frozen_features.cached_features(
        cache, extract, images(), HASHES, progress=Recorded()
    )
    return vectors, computed


def database(root):
    return root / SPEC.key() / DATABASE_FILE


def set_blob(root, sha, blob):
    with sqlite3.connect(database(root)) as db:
        db.execute("UPDATE vectors SET vector = ? WHERE sha256 = ?", (blob, sha))
    db.close()


def test_a_nan_row_and_a_short_row_are_computed_again_not_used(filled):
    nan = np.full(DIM, np.nan, np.float16).tobytes()
    set_blob(filled, HASHES[1], nan)
    set_blob(filled, HASHES[4], b"\x00\x3c")  # two bytes: one float16
    with open_cache(filled, []) as cache:
        vectors, computed = features(cache)
        assert cache.bad_rows == 2 and computed == 2
    np.testing.assert_array_equal(vectors, expected())
    with open_cache(filled, []) as cache:  # replaced in the cache
        again, computed = features(cache)
        assert cache.bad_rows == 0 and computed == 0
    np.testing.assert_array_equal(again, expected())


def test_an_infinite_row_is_left_out_of_the_labelled_images(filled):
    set_blob(filled, HASHES[2], np.full(DIM, np.inf, np.float16).tobytes())
    notes = []
    with open_cache(filled, notes) as cache:
        cache.record_images(HASHES, [f"{i}.png" for i in range(6)], ["a"] * 6)
        reference = cache.labelled()
    assert len(reference.vectors) == len(HASHES) - 1 and HASHES[2] not in reference.sha256
    assert np.isfinite(reference.vectors.astype(np.float32)).all()
    assert notes == [f"{database(filled)}: 1 damaged vector(s) left out"]


@pytest.mark.parametrize("damage", ["truncated", "not a database"])
def test_a_damaged_database_is_rebuilt_with_one_line_saying_so(filled, damage):
    path = database(filled)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(b"not SQLite at all " * 300)
    notes = []
    with open_cache(filled, notes) as cache:
        vectors, computed = features(cache)
        assert computed == len(HASHES) and len(cache) == len(HASHES)
    np.testing.assert_array_equal(vectors, expected())
    assert len(notes) == 1 and notes[0].startswith(f"{path}: damaged (")
    assert notes[0].endswith("rebuilt empty, its vectors are computed again")


def test_a_description_of_another_extractor_empties_the_cache(filled):
    info = filled / SPEC.key() / EXTRACTOR_FILE
    described = json.loads(info.read_text())
    info.write_text(json.dumps({**described, "dim": 2}))  # rows of two numbers would pass
    notes = []
    with open_cache(filled, notes) as cache:
        assert cache.dim == DIM and len(cache) == 0
        vectors, computed = features(cache)
    assert computed == len(HASHES)
    np.testing.assert_array_equal(vectors, expected())
    assert notes and f"{EXTRACTOR_FILE} did not describe this extractor" in notes[0]
    assert json.loads(info.read_text())["dim"] == DIM


def test_an_unreadable_description_is_refused_by_name_where_it_cannot_be_rewritten(filled):
    info = filled / SPEC.key() / EXTRACTOR_FILE
    info.write_text("{ not json")
    with pytest.raises(FeatureCacheError, match=f"{info}: not a feature cache description"):
        FeatureCache(info.parent)
    with open_cache(filled, []) as cache:  # rewritten where the extractor is known
        assert cache.spec == SPEC
