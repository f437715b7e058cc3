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
turned, and k ≥ 4 an augmented copy (:func:`foramflow.train.top.view`). Vectors are
stored as float16 (half the disk; far more precision than the tail needs). SQLite makes
writes atomic, so an interrupted extraction keeps every batch it finished, and the next
run continues from there.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from foramflow.errors import InputNotFound
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
    # (models.top_tuned), where copy k is a view of the image (foramflow.train.top.view)
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

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        info_path = self.folder / EXTRACTOR_FILE
        if not info_path.is_file():
            raise InputNotFound(f"{self.folder}: not a feature cache ({EXTRACTOR_FILE} missing)")
        info = json.loads(info_path.read_text())
        self.spec = ExtractorSpec(**info["spec"])
        self.dim = int(info["dim"])
        self.weights_path = info.get("weights_path")
        self._db = sqlite3.connect(self.folder / DATABASE_FILE, timeout=60)
        self._db.executescript(_SCHEMA)

    @classmethod
    def open(
        cls, root: str | Path, spec: ExtractorSpec, *, dim: int, weights_path: str | Path
    ) -> FeatureCache:
        """The cache of ``spec`` under ``root``, created on first use."""
        folder = Path(root) / spec.key()
        folder.mkdir(parents=True, exist_ok=True)
        info = {"spec": asdict(spec), "dim": dim, "weights_path": str(weights_path)}
        if not (folder / EXTRACTOR_FILE).is_file():
            write_json_atomic(folder / EXTRACTOR_FILE, info)
        return cls(folder)

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
        raise ValueError(f"{path}: holds {len(found)} extractors, name one of: {listed}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]

    def get(self, hashes: Sequence[str], copy: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
        """{sha256: vector} for the hashes present in the cache."""
        found: dict[str, np.ndarray] = {}
        wanted = list(dict.fromkeys(hashes))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = self._db.execute(
                f"SELECT sha256, vector FROM vectors WHERE copy = ? "
                f"AND sha256 IN ({','.join('?' * len(chunk))})",
                [copy, *chunk],
            )
            for sha, blob in rows:
                found[sha] = np.frombuffer(blob, dtype=np.float16).astype(dtype)
        return found

    def put(self, hashes: Sequence[str], vectors: np.ndarray, copy: int = 0) -> None:
        if vectors.shape != (len(hashes), self.dim):
            raise ValueError(f"expected vectors of shape ({len(hashes)}, {self.dim})")
        blobs = np.asarray(vectors, dtype=np.float16)
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO vectors(sha256, copy, vector) VALUES (?, ?, ?)",
                [(sha, copy, blobs[i].tobytes()) for i, sha in enumerate(hashes)],
            )

    def record_images(self, hashes: Iterable[str], paths: Iterable, labels: Iterable[str]) -> None:
        """Remember where each labelled image was last seen, for :func:`nearest_images`."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO images(sha256, path, label) VALUES (?, ?, ?)",
                [(h, str(p), str(k)) for h, p, k in zip(hashes, paths, labels, strict=True)],
            )

    def labelled(self) -> ReferenceSet:
        """Every labelled image recorded here that has a vector."""
        rows = self._db.execute(
            "SELECT i.sha256, i.path, i.label, v.vector FROM images i "
            "JOIN vectors v ON v.sha256 = i.sha256 AND v.copy = 0 ORDER BY i.path"
        ).fetchall()
        return ReferenceSet(
            vectors=np.stack([np.frombuffer(r[3], dtype=np.float16) for r in rows])
            if rows
            else np.zeros((0, self.dim), np.float16),
            sha256=np.array([r[0] for r in rows], dtype=str),
            paths=np.array([r[1] for r in rows], dtype=str),
            labels=np.array([r[2] for r in rows], dtype=str),
        )


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
