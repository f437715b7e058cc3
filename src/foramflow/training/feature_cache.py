"""A disk cache of transfer-learning feature vectors, reused across runs and by ``similar``.

A vector depends only on the image's bytes and on how it was computed (the *extractor*):
backbone, weights file, preprocessing, cyclic slice/pool and mirrored views, the layers
pooled, precision and, for augmented copies, the augmentation. Layout::

    CACHE/                                default: $FORAMFLOW_FEATURE_CACHE, else
                                          ${XDG_CACHE_HOME:-~/.cache}/foramflow/features
      <extractor key>/                    16 hex digits of SHA-256 over the extractor spec
        extractor.json                    the spec, the vector length, the weights file's path
        features.sqlite                   vectors(sha256, copy, vector)   float16 blobs
                                          images(sha256, path, label)     last seen in training

``sha256`` is the SHA-256 of the image file's bytes; ``copy`` is 0 for the image itself
and 1…N for its augmented copies. The same store holds the rows of a frozen bottom of a
network whose top is fine-tuned (:mod:`foramflow.models.top_tuned`; extractor output
``maps@N``), where copy k < 4 is the image turned by k·90°, −1 − k its mirror image so
turned, and k ≥ 4 an augmented copy (:func:`foramflow.training.top.view`). Vectors are
stored as float16 (half the disk; far more precision than the tail needs). SQLite makes
writes atomic, so an interrupted extraction keeps every batch it finished, and the next
run continues from there.

A cache may be damaged (a full disk, a crash of the machine, a copy cut short, a hand
that edited it): every row read is checked (its length, finite values) and a bad one is
treated as missing, so computed again and replaced, never trained on; a database SQLite
finds corrupt, or an ``extractor.json`` that does not describe its folder, is emptied and
filled again. Each repair is told through ``notify``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from foramflow.errors import ForamflowError, InputNotFound, InvalidInput
from foramflow.io.files import write_json_atomic

FEATURE_FORMAT = 1
EXTRACTOR_FILE = "extractor.json"
DATABASE_FILE = "features.sqlite"
AUGMENTATION = "foramflow.data.augment.augment_batch/1"
POOLED = "pooled"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    sha256 TEXT NOT NULL, copy INTEGER NOT NULL, vector BLOB NOT NULL,
    PRIMARY KEY (sha256, copy)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS images (
    sha256 TEXT PRIMARY KEY, path TEXT NOT NULL, label TEXT NOT NULL) WITHOUT ROWID;
"""
_VECTOR_DTYPE = np.dtype(np.float16)
#: SQLite's primary result codes for a file that is damaged or not a database at all.
_DAMAGED = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB


class FeatureCacheError(ForamflowError):
    """A feature cache folder whose description cannot be read."""


def default_cache_root() -> Path:
    if os.environ.get("FORAMFLOW_FEATURE_CACHE"):
        return Path(os.environ["FORAMFLOW_FEATURE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "foramflow" / "features"


def image_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class ExtractorSpec:
    """Everything a feature vector depends on besides the image; its hash is the cache key."""

    backbone: str
    weights_sha256: str
    preprocessing: dict
    cyclic: bool
    pool: str
    precision: str  # "bf16" or "fp32": bf16 vectors differ in the third digit
    stages: bool = False  # the last stages pooled beside the last layer
    mirror: bool = False  # mirrored views pooled too
    augmentation: str = AUGMENTATION
    format: int = FEATURE_FORMAT
    # "pooled": the head's vector; "maps@N": the frozen bottom's rows before block N
    # (models.top_tuned), where copy k is a view of the image (foramflow.training.top.view)
    output: str = POOLED

    def key(self) -> str:
        fields = asdict(self)
        if fields["output"] == POOLED:  # the keys of caches made before maps were cached
            del fields["output"]
        text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def input_size(self) -> int:
        return int(self.preprocessing["params"]["size"])

    @property
    def channels(self) -> int:
        return int(self.preprocessing["params"]["channels"])


class FeatureCache:
    """The vectors of one extractor: a folder holding ``extractor.json`` and ``features.sqlite``."""

    def __init__(self, folder: str | Path, *, notify: Callable[[str], None] | None = None):
        self.folder = Path(folder)
        self.notify = notify or (lambda message: None)
        self.bad_rows = 0  # rows read back that failed their check, since opening
        info_path = self.folder / EXTRACTOR_FILE
        if not info_path.is_file():
            raise InputNotFound(f"{self.folder}: not a feature cache ({EXTRACTOR_FILE} missing)")
        info = _read_info(info_path)
        if info is None:
            raise FeatureCacheError(f"{info_path}: not a feature cache description")
        self.spec, self.dim, self.weights_path = info
        self._connect()

    @property
    def database(self) -> Path:
        return self.folder / DATABASE_FILE

    def _connect(self) -> None:
        self._db = sqlite3.connect(self.database, timeout=60)
        self._guarded(lambda: self._db.executescript(_SCHEMA))

    def _guarded(self, query: Callable):
        """``query()``; when SQLite finds the database damaged, rebuild it empty and ask
        again (the rows it held are computed again)."""
        try:
            return query()
        except sqlite3.DatabaseError as err:
            if getattr(err, "sqlite_errorcode", 0) & 0xFF not in _DAMAGED:
                raise
            self._rebuild(f"damaged ({err})")
        return query()

    def _rebuild(self, why: str) -> None:
        self._db.close()
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{self.database}{suffix}").unlink(missing_ok=True)
        self.notify(f"{self.database}: {why}; rebuilt empty, its vectors are computed again")
        self._db = sqlite3.connect(self.database, timeout=60)
        self._db.executescript(_SCHEMA)

    @classmethod
    def open(
        cls,
        root: str | Path,
        spec: ExtractorSpec,
        *,
        dim: int,
        weights_path: str | Path,
        notify: Callable[[str], None] | None = None,
    ) -> FeatureCache:
        """The cache of ``spec`` under ``root``, created on first use.

        A folder whose ``extractor.json`` is unreadable or describes another extractor
        (or vector length) is described anew and its database emptied: its rows cannot be
        trusted to be this extractor's.
        """
        folder = Path(root) / spec.key()
        folder.mkdir(parents=True, exist_ok=True)
        info = {"spec": asdict(spec), "dim": dim, "weights_path": str(weights_path)}
        info_path = folder / EXTRACTOR_FILE
        found = _read_info(info_path) if info_path.is_file() else None
        stale = info_path.is_file() and (
            found is None or (found[0].key(), found[1]) != (spec.key(), dim)
        )
        if found is None or stale:
            write_json_atomic(info_path, info)
        cache = cls(folder, notify=notify)
        if stale:
            cache._rebuild(f"{EXTRACTOR_FILE} did not describe this extractor")
        return cache

    @classmethod
    def find(cls, path: str | Path) -> FeatureCache:
        """A cache folder, or a cache root that holds exactly one extractor."""
        path = Path(path)
        if (path / EXTRACTOR_FILE).is_file():
            return cls(path)
        found = sorted(p.parent for p in path.glob(f"*/{EXTRACTOR_FILE}"))
        if len(found) == 1:
            return cls(found[0])
        if not found:
            raise InputNotFound(f"{path}: neither a model bundle nor a feature cache")
        listed = "; ".join(f"{p.name} ({_describe(cls(p).spec)})" for p in found)
        raise InvalidInput(f"{path}: holds {len(found)} extractors, name one of: {listed}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self._guarded(lambda: self._db.execute("SELECT COUNT(*) FROM vectors").fetchone())[0]

    def get(self, hashes: Sequence[str], copy: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
        """{sha256: vector} for the hashes present in the cache; a row that fails its check
        (see :meth:`vector`) is left out, to be computed again, and counted in ``bad_rows``."""
        found: dict[str, np.ndarray] = {}
        wanted = list(dict.fromkeys(hashes))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = self._guarded(
                lambda chunk=chunk: self._db.execute(
                    f"SELECT sha256, vector FROM vectors WHERE copy = ? "
                    f"AND sha256 IN ({','.join('?' * len(chunk))})",
                    [copy, *chunk],
                ).fetchall()
            )
            for sha, blob in rows:
                vector = self.vector(blob)
                if vector is not None:
                    found[sha] = vector.astype(dtype)
        return found

    def vector(self, blob) -> np.ndarray | None:
        """A stored row as float16, or None (counted in ``bad_rows``) unless it is ``dim``
        finite numbers."""
        if not isinstance(blob, bytes) or len(blob) != self.dim * _VECTOR_DTYPE.itemsize:
            self.bad_rows += 1
            return None
        vector = np.frombuffer(blob, dtype=_VECTOR_DTYPE)
        if not np.isfinite(vector).all():
            self.bad_rows += 1
            return None
        return vector

    def put(self, hashes: Sequence[str], vectors: np.ndarray, copy: int = 0) -> None:
        if vectors.shape != (len(hashes), self.dim):
            raise ValueError(f"expected vectors of shape ({len(hashes)}, {self.dim})")
        blobs = np.asarray(vectors, dtype=_VECTOR_DTYPE)
        rows = [(sha, copy, blobs[i].tobytes()) for i, sha in enumerate(hashes)]

        def insert() -> None:
            with self._db:
                self._db.executemany(
                    "INSERT OR REPLACE INTO vectors(sha256, copy, vector) VALUES (?, ?, ?)", rows
                )

        self._guarded(insert)

    def record_images(self, hashes: Iterable[str], paths: Iterable, labels: Iterable[str]) -> None:
        """Remember where each labelled image was last seen, for :func:`nearest_images`."""
        rows = [(h, str(p), str(k)) for h, p, k in zip(hashes, paths, labels, strict=True)]

        def insert() -> None:
            with self._db:
                self._db.executemany(
                    "INSERT OR REPLACE INTO images(sha256, path, label) VALUES (?, ?, ?)", rows
                )

        self._guarded(insert)

    def labelled(self) -> ReferenceSet:
        """Every labelled image recorded here that has a vector (that passes its check)."""
        rows = self._guarded(
            lambda: self._db.execute(
                "SELECT i.sha256, i.path, i.label, v.vector FROM images i "
                "JOIN vectors v ON v.sha256 = i.sha256 AND v.copy = 0 ORDER BY i.path"
            ).fetchall()
        )
        read = [(*row[:3], self.vector(row[3])) for row in rows]
        rows = [row for row in read if row[3] is not None]
        if len(rows) < len(read):
            self.notify(f"{self.database}: {len(read) - len(rows)} damaged vector(s) left out")
        return ReferenceSet(
            vectors=np.stack([r[3] for r in rows]) if rows else np.zeros((0, self.dim), np.float16),
            sha256=np.array([r[0] for r in rows], dtype=str),
            paths=np.array([r[1] for r in rows], dtype=str),
            labels=np.array([r[2] for r in rows], dtype=str),
        )


def _read_info(path: Path) -> tuple[ExtractorSpec, int, str | None] | None:
    """(spec, vector length, weights path) of an ``extractor.json``; None if unreadable."""
    try:
        info = json.loads(path.read_text())
        spec = ExtractorSpec(**info["spec"])
        dim = info["dim"]
        spec.key()
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        return None
    weights = info.get("weights_path")
    return spec, dim, weights if isinstance(weights, str) else None


def _describe(spec: ExtractorSpec) -> str:
    params = spec.preprocessing["params"]
    if spec.output != POOLED:
        return f"{spec.backbone}, {params['size']} px, frozen bottom's {spec.output}"
    return (
        f"{spec.backbone}, {params['size']} px, {params['channels']} channel(s), "
        f"{'cyclic' if spec.cyclic else 'not cyclic'}{', mirrored' if spec.mirror else ''}, "
        f"{'stages and last layer' if spec.stages else 'last layer'}, {spec.precision}"
    )


# -- nearest neighbours ------------------------------------------------------------------


@dataclass
class ReferenceSet:
    """Labelled images and their feature vectors (N, F), the search space of ``similar``."""

    vectors: np.ndarray
    sha256: np.ndarray
    paths: np.ndarray
    labels: np.ndarray

    def save(self, path: str | Path) -> None:
        np.savez(
            path,
            vectors=self.vectors.astype(np.float16),
            sha256=self.sha256,
            paths=self.paths,
            labels=self.labels,
        )

    @classmethod
    def load(cls, path: str | Path) -> ReferenceSet:
        with np.load(path, allow_pickle=False) as data:
            return cls(**{name: data[name] for name in ("vectors", "sha256", "paths", "labels")})

    def nearest(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(index (Q, k), cosine similarity (Q, k)) of the k most similar references per query."""
        refs = _unit(self.vectors.astype(np.float32))
        sims = _unit(np.atleast_2d(queries).astype(np.float32)) @ refs.T
        k = min(k, len(refs))
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(sims, top, 1).argsort(axis=1)[:, ::-1]
        index = np.take_along_axis(top, order, 1)
        return index, np.take_along_axis(sims, index, 1)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
