"""The results folder of a classification run, written so that a run can always resume.

Its layout and run record are :mod:`foramflow.classify.results`. Every file is written to a
temporary name, flushed to disk and renamed, so that a crash, a kill -9 or a power cut
leaves either the whole file or none of it. A chunk that exists is complete. Each chunk
carries the fingerprint of its run (model, inputs, decision rule, chunk size) in its Parquet
metadata; on restart only chunks with this run's fingerprint are kept, so that chunks of
another run are never mixed in, even when run.json is gone.

Every table follows :mod:`foramflow.io.tables`: the depth column is ``depth_<unit>`` when the
sample rule states a unit, unknown values are nulls. In memory it is ``depth``, whatever
the files call it, so that folders written before units were stated read the same.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from foramflow.classify.results import (
    ABUNDANCE_FILE,
    CHUNKS_DIR,
    COUNTS_FILE,
    MANIFEST_FILE,
    PREDICTIONS_FILE,
    RunRecord,
    read_run,
    run_path,
    write_run,
)
from foramflow.io.files import atomic_path, atomic_write
from foramflow.io.tables import (
    DEPTH,
    depth_column,
    find_depth_column,
    parquet_table,
    to_csv,
    unknown_as_null,
)

_TEMP_GLOB = ".*.tmp"  # what io.files.atomic_path leaves if killed
FINGERPRINT_KEY = b"foramflow.run_fingerprint"
# What decides the rows of a chunk, besides the chunk size.
_DECISIVE = ("bundle_hash", "precision", "input_hash", "threshold", "class_thresholds")


def manifest_hash(manifest: pd.DataFrame) -> str:
    """SHA-256 of the input list: every path with its size, mtime, sample, depth and, for a
    file that cannot be read, the problem found when listing it."""
    digest = hashlib.sha256()
    for row in manifest.itertuples(index=False):
        digest.update(
            f"{row.path}\0{row.size}\0{row.mtime_ns}\0{row.sample}\0{row.depth!r}\n".encode()
        )
        if row.problem:
            digest.update(f"{row.problem}\n".encode())
    return digest.hexdigest()


def run_fingerprint(job: dict, chunk_size: int) -> str:
    """SHA-256 of everything the rows of a chunk depend on (the depth unit only where one is
    stated, so that the chunks of a run without one keep the fingerprint they had)."""
    decisive = {key: job[key] for key in _DECISIVE} | {"chunk_size": chunk_size}
    if job.get("depth_unit") is not None:
        decisive["depth_unit"] = job["depth_unit"]
    return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()


def describe_changes(old: pd.DataFrame, new: pd.DataFrame) -> str:
    """A short account of how two input lists differ (added, removed, modified, re-assigned)."""
    merged = old.merge(new, on="path", how="outer", suffixes=("_old", "_new"), indicator=True)
    both = merged[merged["_merge"] == "both"]
    modified = both[
        (both["size_old"] != both["size_new"]) | (both["mtime_ns_old"] != both["mtime_ns_new"])
    ]
    moved = both[
        (both["sample_old"] != both["sample_new"])
        | ~(
            (both["depth_old"] == both["depth_new"])
            | (both["depth_old"].isna() & both["depth_new"].isna())
        )
    ]
    parts = []
    for name, rows in (
        ("added", merged[merged["_merge"] == "right_only"]),
        ("removed", merged[merged["_merge"] == "left_only"]),
        ("modified", modified),
        ("given another sample or depth", moved),
    ):
        if len(rows):
            parts.append(f"{len(rows)} {name} (e.g. {rows['path'].iloc[0]})")
    return "; ".join(parts) or "the same files in another order"


class RunStore:
    """Reads and writes one results folder."""

    def __init__(self, out_dir: str | Path, *, depth_unit: str | None = None):
        self.root = Path(out_dir)
        self.chunks_dir = self.root / CHUNKS_DIR
        self.depth_column = depth_column(depth_unit)

    def path(self, name: str) -> Path:
        return self.root / name

    def prepare(self) -> None:
        """Create the folders and drop temporary files an interrupted run left behind."""
        self.chunks_dir.mkdir(parents=True, exist_ok=True)
        for folder in (self.root, self.chunks_dir):
            for stale in folder.glob(_TEMP_GLOB):
                stale.unlink(missing_ok=True)

    def read_run(self) -> RunRecord | None:
        return read_run(self.root)

    def write_run(self, record: RunRecord) -> None:
        write_run(self.root, record)

    def read_manifest(self) -> pd.DataFrame | None:
        path = self.path(MANIFEST_FILE)
        return _depth_inside(pd.read_parquet(path), path) if path.is_file() else None

    def write_manifest(self, manifest: pd.DataFrame) -> None:
        table = parquet_table(manifest.rename(columns={DEPTH: self.depth_column}))
        self._write_atomic(self.path(MANIFEST_FILE), lambda tmp: pq.write_table(table, tmp))

    def read_predictions(self, columns: list[str]) -> pa.Table:
        """Columns of predictions.parquet, its depth column (whatever its unit) as ``depth``."""
        path = self.path(PREDICTIONS_FILE)
        names = pq.read_schema(path).names
        on_disk = find_depth_column(names, path) or DEPTH
        wanted = [on_disk if c == DEPTH else c for c in columns]
        return _rename(pq.read_table(path, columns=wanted), on_disk, DEPTH)

    def chunk_path(self, index: int) -> Path:
        return self.chunks_dir / f"{index:06d}.parquet"

    def finished_chunks(self, fingerprint: str) -> tuple[set[int], int]:
        """(indices of the chunks written by the run with ``fingerprint``, number of other
        chunks removed: they belong to another run, or to none that can be proved)."""
        mine, others = set(), 0
        for path in self.chunks_dir.glob("[0-9]*.parquet"):
            if _chunk_fingerprint(path) == fingerprint.encode():
                mine.add(int(path.stem))
            else:
                path.unlink()
                others += 1
        return mine, others

    def write_chunk(self, index: int, table: pa.Table, fingerprint: str) -> None:
        table = unknown_as_null(_rename(table, DEPTH, self.depth_column))
        signed = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), FINGERPRINT_KEY: fingerprint.encode()}
        )
        self._write_atomic(self.chunk_path(index), lambda tmp: pq.write_table(signed, tmp))

    def read_chunk(self, index: int, fingerprint: str) -> pa.Table:
        path = self.chunk_path(index)
        if _chunk_fingerprint(path) != fingerprint.encode():
            raise RuntimeError(f"{path}: written by another run; run the command again")
        table = pq.read_table(path).replace_schema_metadata(None)
        on_disk = find_depth_column(table.column_names, path) or DEPTH
        return unknown_as_null(_rename(table, on_disk, DEPTH))

    def merge_chunks(
        self, n_chunks: int, schema: pa.Schema, fingerprint: str
    ) -> Iterator[pa.Table]:
        """Write predictions.parquet from the chunks, one at a time; yield each chunk (its
        depth column named ``depth``, like ``schema``'s)."""
        target = self.path(PREDICTIONS_FILE)
        on_disk = _rename_field(schema, DEPTH, self.depth_column)
        with atomic_path(target, durable=True) as tmp, pq.ParquetWriter(tmp, on_disk) as writer:
            for index in range(n_chunks):
                table = self.read_chunk(index, fingerprint)
                writer.write_table(_rename(table, DEPTH, self.depth_column))
                yield table

    def remove_chunks(self) -> None:
        for path in self.chunks_dir.glob("*.parquet"):
            path.unlink()
        self.chunks_dir.rmdir()

    def clear(self) -> None:
        """Forget an earlier run in this folder: its outputs and chunks, and run.json last,
        so that a crash halfway still leaves the record of what the files belong to."""
        for name in (PREDICTIONS_FILE, COUNTS_FILE, ABUNDANCE_FILE):
            self.path(name).unlink(missing_ok=True)
        if self.chunks_dir.is_dir():
            self.remove_chunks()
        self.path(MANIFEST_FILE).unlink(missing_ok=True)
        run_path(self.root).unlink(missing_ok=True)

    def write_csv(self, name: str, frame: pd.DataFrame) -> None:
        named = frame.rename(columns={DEPTH: self.depth_column})
        self._write_atomic(self.path(name), lambda tmp: to_csv(named, tmp, index=True))

    def _write_atomic(self, target: Path, write: Callable[[str], None]) -> None:
        atomic_write(target, lambda tmp: write(str(tmp)), durable=True)


def _rename(table: pa.Table, old: str, new: str) -> pa.Table:
    if old == new or old not in table.column_names:
        return table
    return table.rename_columns([new if name == old else name for name in table.column_names])


def _rename_field(schema: pa.Schema, old: str, new: str) -> pa.Schema:
    index = schema.get_field_index(old)
    return schema if index < 0 else schema.set(index, schema.field(index).with_name(new))


def _depth_inside(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    on_disk = find_depth_column(frame.columns, path)
    return frame.rename(columns={on_disk: DEPTH}) if on_disk else frame


def _chunk_fingerprint(path: Path) -> bytes | None:
    """The run fingerprint a chunk file records, or None (none, or not a Parquet file)."""
    try:
        return (pq.read_schema(path).metadata or {}).get(FINGERPRINT_KEY)
    except (OSError, pa.ArrowInvalid):
        return None
