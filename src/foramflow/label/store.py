"""The labelling project: one SQLite file (WAL mode) beside the images it describes.

Images are registered by reference (an image root plus a path inside it) and are never
moved or changed. Each image has a validated label (who, when), the latest prediction
(which model, what score) and, derived from those two, a status: ``unlabelled``,
``predicted`` or ``validated``. Every change of label is one *batch* in the history, so any
change can be undone and the history says who changed what.

Every thread gets its own connection; writes take SQLite's write lock up front
(``BEGIN IMMEDIATE``), so concurrent writers queue instead of losing updates.

Class names become folder names and sample names become parts of file names when a
training set is exported, so :func:`class_name` and :func:`sample_name` are the one rule
for each, applied to every name that enters the store (labels, predictions, imports).
"""

from __future__ import annotations

import csv
import errno
import math
import os
import re
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from foramflow.errors import ForamflowError, InvalidInput
from foramflow.io.class_names import (
    UNSURE,
    ClassNameError,
    canonical_class_name,
    class_key,
    same_class_error,
)
from foramflow.io.images import ImageReadError, image_size, is_image_file
from foramflow.io.limits import MAX_TABLE_BYTES, check_size

STORE_FILE = "foramflow-labels.sqlite"
# The labels ParticleTrieur projects use for "no class" and "below the threshold".
PARTICLETRIEUR_MARKERS = ("unlabeled", UNSURE)
MAX_SAMPLE_NAME = 200
STATUSES = ("unlabelled", "predicted", "validated")
TARGET_PER_CLASS = 200  # images per class the method aims for (method §2)
DEFAULT_DEPTH_PATTERN = r"(\d+(?:\.\d+)?)\s*cm"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS roots (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    root_id INTEGER NOT NULL REFERENCES roots(id),
    relpath TEXT NOT NULL,
    sample TEXT,
    depth_cm REAL,
    width INTEGER,
    height INTEGER,
    guid TEXT,
    resolution REAL,
    label TEXT,
    validated_by TEXT,
    validated_at TEXT,
    pred_label TEXT,
    pred_score REAL,
    pred_margin REAL,
    pred_model TEXT,
    current TEXT GENERATED ALWAYS AS (coalesce(label, pred_label)) VIRTUAL,
    status TEXT GENERATED ALWAYS AS (
        CASE WHEN label IS NOT NULL THEN 'validated'
             WHEN pred_label IS NOT NULL THEN 'predicted'
             ELSE 'unlabelled' END) VIRTUAL,
    UNIQUE (root_id, relpath)
);
CREATE INDEX IF NOT EXISTS images_current ON images(current, id);
CREATE INDEX IF NOT EXISTS images_status ON images(status, id);
CREATE INDEX IF NOT EXISTS images_sample ON images(sample, id);
CREATE TABLE IF NOT EXISTS classes (
    name TEXT PRIMARY KEY,
    grp TEXT NOT NULL DEFAULT '',
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    user TEXT NOT NULL,
    at TEXT NOT NULL,
    action TEXT NOT NULL,
    undone_by INTEGER
);
CREATE TABLE IF NOT EXISTS history (
    batch_id INTEGER NOT NULL REFERENCES batches(id),
    image_id INTEGER NOT NULL REFERENCES images(id),
    old_label TEXT, old_by TEXT, old_at TEXT,
    new_label TEXT
);
CREATE INDEX IF NOT EXISTS history_batch ON history(batch_id);
CREATE INDEX IF NOT EXISTS history_image ON history(image_id);
CREATE TABLE IF NOT EXISTS features (
    image_id INTEGER PRIMARY KEY REFERENCES images(id),
    source TEXT NOT NULL,
    vector BLOB NOT NULL,
    phash INTEGER NOT NULL
);
"""

# Columns a grid row carries to the browser.
_ROW = (
    "id, root_id, relpath, sample, depth_cm, label, validated_by, validated_at, "
    "pred_label, pred_score, pred_model, status"
)


class PathRefused(ForamflowError, ValueError):
    """A requested path is outside every registered image root."""


class InvalidName(ForamflowError, ValueError):
    """A class, sample or file name the store cannot keep or export safely."""


@dataclass(frozen=True)
class ImageFilter:
    """Grid filters; ``label`` matches the validated label, else the predicted one."""

    label: str | None = None
    status: str | None = None
    sample: str | None = None
    min_score: float | None = None
    max_score: float | None = None

    def where(self) -> tuple[str, list]:
        clauses, params = [], []
        for column, value in (("current", self.label), ("status", self.status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.sample is not None:
            clauses.append("sample = ?")
            params.append(self.sample)
        if self.min_score is not None:
            clauses.append("pred_score >= ?")
            params.append(self.min_score)
        if self.max_score is not None:
            clauses.append("pred_score <= ?")
            params.append(self.max_score)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class LabelStore:
    """A labelling project stored in ``PROJECT_DIR/foramflow-labels.sqlite``."""

    def __init__(self, project_dir: str | Path):
        self.project_dir = Path(project_dir).resolve()
        self.project_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.project_dir / STORE_FILE
        self._local = threading.local()
        con = self._connection()
        con.execute("PRAGMA journal_mode=WAL")
        con.executescript(_SCHEMA)
        self._roots: dict[int, Path] = {}
        self._refresh_roots()

    # -- connections ---------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA foreign_keys=ON")
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con = con
        return con

    def query(self, sql: str, params: Sequence = ()) -> list[sqlite3.Row]:
        return self._connection().execute(sql, params).fetchall()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding SQLite's write lock from the start."""
        con = self._connection()
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    # -- image roots and files -----------------------------------------------------------

    def _refresh_roots(self) -> None:
        self._roots = {row["id"]: Path(row["path"]) for row in self.query("SELECT * FROM roots")}

    @property
    def roots(self) -> dict[int, Path]:
        return dict(self._roots)

    def add_root(self, folder: str | Path) -> int:
        folder = Path(folder).resolve()
        if not folder.is_dir():
            raise InvalidInput(f"{_shown(folder)}: not a folder")
        if not _is_utf8(str(folder)):
            raise InvalidName(f"{_shown(folder)}: folder name is not valid UTF-8, cannot be stored")
        with self.write() as con:
            con.execute("INSERT OR IGNORE INTO roots(path) VALUES (?)", (str(folder),))
            root_id = con.execute("SELECT id FROM roots WHERE path = ?", (str(folder),)).fetchone()
        self._refresh_roots()
        return root_id[0]

    def resolve(self, root_id: int, relpath: str) -> Path:
        """The real path of ``relpath`` inside root ``root_id``.

        Refuses unknown roots, absolute paths, ``..`` components, and symbolic links that
        lead out of the root.
        """
        if root_id not in self._roots:
            self._refresh_roots()
        root = self._roots.get(root_id)
        if root is None:
            raise PathRefused(f"unknown image root {root_id}")
        parts = Path(relpath).parts
        if not relpath or Path(relpath).is_absolute() or ".." in parts or "\\" in relpath:
            raise PathRefused(f"{relpath!r}: not a plain path inside the image root")
        real = (root / relpath).resolve()
        if not real.is_relative_to(root.resolve()):
            raise PathRefused(f"{relpath!r}: leads out of the image root")
        return real

    def image_path(self, image_id: int) -> Path:
        rows = self.query("SELECT root_id, relpath FROM images WHERE id = ?", (image_id,))
        if not rows:
            raise KeyError(image_id)
        return self.resolve(rows[0]["root_id"], rows[0]["relpath"])

    def image_paths(self, ids: Sequence[int] | None = None) -> dict[int, Path]:
        """Absolute paths (root / relpath, not resolved) of the given images or of all."""
        rows = self._rows_by_id("id, root_id, relpath", ids)
        return {r["id"]: self._roots[r["root_id"]] / r["relpath"] for r in rows}

    def _rows_by_id(self, columns: str, ids: Sequence[int] | None) -> list[sqlite3.Row]:
        if ids is None:
            return self.query(f"SELECT {columns} FROM images ORDER BY id")
        rows = []
        for start in range(0, len(ids), 900):
            chunk = list(ids[start : start + 900])
            marks = ",".join("?" * len(chunk))
            rows += self.query(f"SELECT {columns} FROM images WHERE id IN ({marks})", chunk)
        return rows

    def add_images(
        self,
        folder: str | Path,
        *,
        metadata_csv: str | Path | None = None,
        depth_pattern: str = DEFAULT_DEPTH_PATTERN,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[int, list[str]]:
        """Register every image under ``folder``; return (number added, problems).

        The sample of an image is its first folder under ``folder`` (the root's name for
        images directly in it), as in ``foramflow classify``, so that the crops of every
        slide of a sample, in their own subfolders, share the sample. Its depth in cm is the
        first match of ``depth_pattern`` in the sample name.
        A CSV with ``sample`` and ``depth_cm`` (``depth_m``, ``depth_mm``, converted; plain
        ``depth`` is taken to be in cm) columns overrides both, per sample; with a ``path``
        column (relative to ``folder``) it sets them per image.
        Every entry that looks like an image but cannot be registered (a link loop or out of
        ``folder``, a dangling link, a name that is not UTF-8, an unreadable file) is
        named in the problems, with the reason.
        """
        root_id = self.add_root(folder)
        root = self._roots[root_id]
        by_sample, by_path = _read_metadata(metadata_csv) if metadata_csv else ({}, {})
        pattern = re.compile(depth_pattern) if depth_pattern else None
        rows, problems = [], []
        for path in _image_files(root, problems):
            relpath = path.relative_to(root).as_posix()
            parts = path.relative_to(root).parts
            sample = parts[0] if len(parts) > 1 else root.name
            depth = _depth_from_name(sample, pattern)
            sample, depth = by_path.get(relpath, by_sample.get(sample, (sample, depth)))
            try:
                width, height = image_size(path)
            except ImageReadError as err:
                problems.append(f"{path}: not a readable image ({err.reason})")
                continue
            rows.append((root_id, relpath, sample, depth, width, height))
            if progress and len(rows) % 1000 == 0:
                progress(len(rows))
        with self.write() as con:
            before = con.total_changes
            con.executemany(
                "INSERT OR IGNORE INTO images(root_id, relpath, sample, depth_cm, width, height)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            added = con.total_changes - before
        if progress:
            progress(len(rows))
        return added, problems

    def add_image_records(self, records: Iterable[dict]) -> int:
        """Register single files (e.g. from a ParticleTrieur project), each under its folder.

        Each record holds ``path`` and optionally sample, depth_cm, width, height, guid,
        resolution, label, validated_by, pred_label, pred_score, pred_model.
        """
        columns = [
            *("sample", "depth_cm", "width", "height", "guid", "resolution"),
            *("label", "validated_by", "validated_at", "pred_label", "pred_score", "pred_model"),
        ]
        records = [_checked_record(record) for record in records]
        root_ids = {}
        for record in records:
            parent = Path(record["path"]).absolute().parent
            if parent not in root_ids:
                root_ids[parent] = self.add_root(parent)
        rows = [
            [
                root_ids[Path(r["path"]).absolute().parent],
                Path(r["path"]).name,
                *(r.get(c) for c in columns),
            ]
            for r in records
        ]
        with self.write() as con:
            before = con.total_changes
            con.executemany(
                f"INSERT OR IGNORE INTO images(root_id, relpath, {', '.join(columns)})"
                f" VALUES (?, ?, {', '.join('?' * len(columns))})",
                rows,
            )
            added = con.total_changes - before
            for record in records:
                for label in (record.get("label"), record.get("pred_label")):
                    if label:
                        _ensure_class(con, label)
        return added

    # -- reading -------------------------------------------------------------------------

    def count(self, where: ImageFilter = ImageFilter()) -> int:
        clause, params = where.where()
        return self.query(f"SELECT count(*) FROM images{clause}", params)[0][0]

    def page(self, where: ImageFilter = ImageFilter(), *, offset: int = 0, limit: int = 200):
        """One page of grid rows (dicts), in a stable order (by id)."""
        clause, params = where.where()
        rows = self.query(
            f"SELECT {_ROW} FROM images{clause} ORDER BY id LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [dict(row) for row in rows]

    def rows(self, ids: Sequence[int]) -> list[dict]:
        """Grid rows for the given ids, in the given order."""
        by_id = {row["id"]: dict(row) for row in self._rows_by_id(_ROW, ids)}
        return [by_id[i] for i in ids if i in by_id]

    def all_rows(self, columns: str = "*") -> list[sqlite3.Row]:
        return self.query(f"SELECT {columns} FROM images ORDER BY id")

    def samples(self) -> list[str]:
        rows = self.query("SELECT DISTINCT sample FROM images WHERE sample IS NOT NULL")
        return sorted(row[0] for row in rows)

    def classes(self) -> list[dict]:
        """Classes in display order with their group and counts of validated/predicted images."""
        counts: dict[str, dict[str, int]] = {}
        for row in self.query(
            "SELECT current, status, count(*) AS n FROM images WHERE current IS NOT NULL"
            " GROUP BY current, status"
        ):
            counts.setdefault(row["current"], {})[row["status"]] = row["n"]
        out = []
        for row in self.query("SELECT name, grp FROM classes ORDER BY position, name"):
            c = counts.get(row["name"], {})
            validated = c.get("validated", 0)
            out.append(
                {
                    "name": row["name"],
                    "group": row["grp"],
                    "validated": validated,
                    "predicted": c.get("predicted", 0),
                    "below_target": validated < TARGET_PER_CLASS,
                }
            )
        return out

    def status_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for row in self.query("SELECT status, count(*) FROM images GROUP BY status"):
            counts[row[0]] = row[1]
        return counts

    def history(self, image_id: int) -> list[dict]:
        rows = self.query(
            "SELECT b.id AS batch, b.user, b.at, b.action, b.undone_by, h.old_label, h.new_label"
            " FROM history h JOIN batches b ON b.id = h.batch_id WHERE h.image_id = ?"
            " ORDER BY b.id",
            (image_id,),
        )
        return [dict(row) for row in rows]

    def disagreements(self) -> list[int]:
        """Validated images whose latest prediction names another class."""
        rows = self.query(
            "SELECT id FROM images WHERE label IS NOT NULL AND pred_label IS NOT NULL"
            " AND pred_label != label ORDER BY pred_score DESC, id"
        )
        return [row[0] for row in rows]

    # -- labels --------------------------------------------------------------------------

    def set_labels(
        self, ids: Sequence[int], label: str | None, *, user: str, action: str = "label"
    ) -> int:
        """Validate ``ids`` as ``label`` (None clears the label) in one undoable batch."""
        ids = list(dict.fromkeys(int(i) for i in ids))
        with self.write() as con:
            if label is not None:
                label = _ensure_class(con, label)
            return _relabel(con, ids, label, user=user, action=action)

    def accept_predictions(self, *, label: str | None, min_score: float, user: str) -> int:
        """Validate every unvalidated image predicted ``label`` (any, if None) at ≥ min_score."""
        if label is not None:
            label = class_name(label)
        with self.write() as con:
            sql = "SELECT id, pred_label FROM images WHERE label IS NULL AND pred_score >= ?"
            params: list = [min_score]
            if label is not None:
                sql += " AND pred_label = ?"
                params.append(label)
            by_label: dict[str, list[int]] = {}
            for row in con.execute(sql, params):
                by_label.setdefault(row["pred_label"], []).append(row["id"])
            if not by_label:
                return 0
            batch = _new_batch(con, user, "accept")
            for pred_label, ids in by_label.items():
                class_name(pred_label)  # a prediction stored before names were checked
                _relabel(con, ids, pred_label, user=user, action="accept", batch=batch)
            return sum(map(len, by_label.values()))

    def undo(self, *, user: str | None = None) -> list[int]:
        """Undo the latest batch not yet undone (by ``user`` when given); return its images."""
        with self.write() as con:
            sql = "SELECT id FROM batches WHERE undone_by IS NULL AND action != 'undo'"
            params = []
            if user is not None:
                sql += " AND user = ?"
                params.append(user)
            row = con.execute(sql + " ORDER BY id DESC LIMIT 1", params).fetchone()
            if row is None:
                return []
            target = row[0]
            undo_batch = _new_batch(con, user or "anonymous", "undo")
            changes = con.execute(
                "SELECT image_id, old_label, old_by, old_at FROM history WHERE batch_id = ?"
                " ORDER BY rowid DESC",
                (target,),
            ).fetchall()
            for change in changes:
                con.execute(
                    "INSERT INTO history(batch_id, image_id, old_label, old_by, old_at,"
                    " new_label) SELECT ?, id, label, validated_by, validated_at, ?"
                    " FROM images WHERE id = ?",
                    (undo_batch, change["old_label"], change["image_id"]),
                )
                con.execute(
                    "UPDATE images SET label = ?, validated_by = ?, validated_at = ? WHERE id = ?",
                    (change["old_label"], change["old_by"], change["old_at"], change["image_id"]),
                )
                if change["old_label"]:
                    _ensure_class(con, change["old_label"])
            con.execute("UPDATE batches SET undone_by = ? WHERE id = ?", (undo_batch, target))
            return [change["image_id"] for change in changes]

    def set_predictions(
        self, predictions: Iterable[tuple[int, str, float, float]], *, model: str
    ) -> None:
        """Store (image id, label, top score, margin to the second score) from ``model``."""
        predictions = list(predictions)
        with self.write() as con:
            names = {label: _ensure_class(con, label) for label in {p[1] for p in predictions}}
            rows = [
                (names[label], score, margin, model, i) for i, label, score, margin in predictions
            ]
            con.executemany(
                "UPDATE images SET pred_label = ?, pred_score = ?, pred_margin = ?,"
                " pred_model = ? WHERE id = ?",
                rows,
            )

    # -- classes -------------------------------------------------------------------------

    def create_class(self, name: str, *, group: str = "") -> None:
        with self.write() as con:
            name = _ensure_class(con, name)
            if group:
                con.execute("UPDATE classes SET grp = ? WHERE name = ?", (group, name))

    def set_group(self, name: str, group: str) -> None:
        with self.write() as con:
            if (
                con.execute("UPDATE classes SET grp = ? WHERE name = ?", (group, name)).rowcount
                == 0
            ):
                raise KeyError(name)

    def rename_class(self, old: str, new: str) -> None:
        """Rename ``old`` everywhere; ``old`` may be any stored name, ``new`` must be valid."""
        new = class_name(new)
        with self.write() as con:
            if con.execute("SELECT 1 FROM classes WHERE name = ?", (old,)).fetchone() is None:
                raise KeyError(old)
            if (
                new != old
                and con.execute("SELECT 1 FROM classes WHERE name = ?", (new,)).fetchone()
            ):
                raise InvalidInput(f"class {new!r} exists already: merge instead")
            _refuse_same_class(con, new, besides=old)
            con.execute("UPDATE classes SET name = ? WHERE name = ?", (new, old))
            for table, column in (
                ("images", "label"),
                ("images", "pred_label"),
                ("history", "old_label"),
                ("history", "new_label"),
            ):
                con.execute(f"UPDATE {table} SET {column} = ? WHERE {column} = ?", (new, old))

    def merge_classes(self, sources: Sequence[str], target: str, *, user: str) -> int:
        """Relabel every image of ``sources`` as ``target`` (undoable) and drop the sources."""
        target = class_name(target)
        sources = [s for s in sources if s != target]
        with self.write() as con:
            _ensure_class(con, target)
            marks = ",".join("?" * len(sources))
            ids = [
                row[0]
                for row in con.execute(f"SELECT id FROM images WHERE label IN ({marks})", sources)
            ]
            changed = _relabel(con, ids, target, user=user, action="merge") if ids else 0
            con.execute(
                f"UPDATE images SET pred_label = ? WHERE pred_label IN ({marks})",
                [target, *sources],
            )
            con.execute(f"DELETE FROM classes WHERE name IN ({marks})", sources)
            return changed

    # -- features ------------------------------------------------------------------------

    def stored_features(self, ids: Sequence[int], source: str) -> dict[int, tuple[bytes, int]]:
        rows = []
        for start in range(0, len(ids), 900):
            chunk = list(ids[start : start + 900])
            marks = ",".join("?" * len(chunk))
            rows += self.query(
                f"SELECT image_id, vector, phash FROM features WHERE source = ?"
                f" AND image_id IN ({marks})",
                [source, *chunk],
            )
        return {row[0]: (row[1], row[2]) for row in rows}

    def save_features(self, rows: Iterable[tuple[int, bytes, int]], source: str) -> None:
        with self.write() as con:
            con.executemany(
                "INSERT OR REPLACE INTO features(image_id, source, vector, phash)"
                " VALUES (?, ?, ?, ?)",
                [(i, source, vector, phash) for i, vector, phash in rows],
            )


# -- helpers -------------------------------------------------------------------------------


def class_name(name: str) -> str:
    """``name`` without surrounding blanks, in canonical form, if it can name a class; else
    :class:`InvalidName` (the rule: :mod:`foramflow.io.class_names`). ParticleTrieur's own
    markers ``unlabeled`` and ``unsure`` are kept as spelled there."""
    text = name.strip() if isinstance(name, str) else name
    try:
        return canonical_class_name(text, allowed=PARTICLETRIEUR_MARKERS)
    except ClassNameError as err:
        raise InvalidName(str(err)) from None


def sample_name(name: str | None) -> str | None:
    """``name`` if it can name a sample (or None); else :class:`InvalidName`.

    A sample name starts the file names of an exported training set, so it holds no path
    separator and no control character, and is neither ``.`` nor ``..``.
    """
    if name is None:
        return None
    if len(name) > MAX_SAMPLE_NAME or name in (".", "..") or _has_any(name, "/\\"):
        raise InvalidName(
            f"{name!r}: a sample name is at most {MAX_SAMPLE_NAME} characters, without"
            " / \\ or control characters, and is not . or .."
        )
    return name


def _has_any(text: str, forbidden: str) -> bool:
    """True when ``text`` holds one of ``forbidden`` or a control character."""
    return any(c in forbidden or ord(c) < 32 or ord(c) == 127 for c in text)


def _shown(path: str | Path) -> str:
    """``path`` as printable text: bytes that are not UTF-8 appear as ``\\udcXX``."""
    return os.fspath(path).encode("utf-8", "backslashreplace").decode("utf-8")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _image_files(root: Path, problems: list[str]) -> Iterator[Path]:
    """The image files under ``root`` that can be registered, in a stable order.

    Hidden folders and files are passed over; everything else that cannot be registered
    is added to ``problems`` with the reason.
    """

    def unlistable(err: OSError) -> None:
        problems.append(f"{_shown(err.filename)}: cannot list folder ({err.strerror})")

    for dirpath, dirnames, filenames in os.walk(root, onerror=unlistable):
        dirnames[:] = [
            name
            for name in sorted(dirnames)
            if not name.startswith(".") and _folder_to_walk(Path(dirpath) / name, problems)
        ]
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not is_image_file(path):
                continue
            problem = _file_problem(path, root)
            if problem:
                problems.append(f"{_shown(path)}: {problem}")
            else:
                yield path


def _folder_to_walk(folder: Path, problems: list[str]) -> bool:
    """True when ``folder`` is walked; a linked or non-UTF-8 folder is reported instead."""
    if not _is_utf8(folder.name):
        problems.append(f"{_shown(folder)}: folder name is not valid UTF-8, not searched")
    elif folder.is_symlink():
        problems.append(f"{_shown(folder)}: symbolic link to a folder, not followed")
    else:
        return True
    return False


def _file_problem(path: Path, root: Path) -> str | None:
    """Why the file at ``path`` cannot be registered under ``root``; None when it can."""
    if not _is_utf8(path.name):
        return "file name is not valid UTF-8, cannot be stored"
    try:
        info = path.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symbolic link loop"
        if err.errno == errno.ENOENT and path.is_symlink():
            return "symbolic link to a missing file"
        return f"cannot be read ({err.strerror})"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if not path.resolve().is_relative_to(root):
        return f"symbolic link out of {root}"
    return None


def _checked_record(record: dict) -> dict:
    """``record`` with its class and sample names checked (and blanks around classes cut)."""
    try:
        labels = {
            k: class_name(record[k]) for k in ("label", "pred_label") if record.get(k) is not None
        }
        return {**record, **labels, "sample": sample_name(record.get("sample"))}
    except InvalidName as err:
        raise InvalidName(f"{record['path']}: {err}") from None


def _ensure_class(con: sqlite3.Connection, name: str) -> str:
    """Add the class ``name`` unless it exists; return the name as stored. A name of the
    same class spelled otherwise (case, Unicode form) is refused."""
    name = class_name(name)
    _refuse_same_class(con, name)
    con.execute(
        "INSERT OR IGNORE INTO classes(name, position)"
        " SELECT ?, coalesce(max(position) + 1, 0) FROM classes",
        (name,),
    )
    return name


def _refuse_same_class(con: sqlite3.Connection, name: str, *, besides: str | None = None) -> None:
    """:class:`InvalidName` when a class other than ``name`` and ``besides`` is the same
    class as ``name``."""
    key = class_key(name)
    for (stored,) in con.execute("SELECT name FROM classes"):
        if stored not in (name, besides) and class_key(stored) == key:
            raise InvalidName(str(same_class_error(name, stored)))


def _new_batch(con: sqlite3.Connection, user: str, action: str) -> int:
    return con.execute(
        "INSERT INTO batches(user, at, action) VALUES (?, ?, ?)", (user, now_iso(), action)
    ).lastrowid


def _relabel(
    con: sqlite3.Connection,
    ids: list[int],
    label: str | None,
    *,
    user: str,
    action: str,
    batch: int | None = None,
) -> int:
    if not ids:
        return 0
    batch = batch or _new_batch(con, user, action)
    at = now_iso() if label is not None else None
    by = user if label is not None else None
    changed = 0
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        marks = ",".join("?" * len(chunk))
        con.execute(
            "INSERT INTO history(batch_id, image_id, old_label, old_by, old_at, new_label)"
            " SELECT ?, id, label, validated_by, validated_at, ?"
            f" FROM images WHERE id IN ({marks})",
            [batch, label, *chunk],
        )
        changed += con.execute(
            "UPDATE images SET label = ?, validated_by = ?, validated_at = ?"
            f" WHERE id IN ({marks})",
            [label, by, at, *chunk],
        ).rowcount
    return changed


def _depth_from_name(name: str, pattern: re.Pattern | None) -> float | None:
    match = pattern.search(name) if pattern else None
    return float(match.group(1)) if match else None


_CM_PER_UNIT = {None: 1.0, "cm": 1.0, "m": 100.0, "mm": 0.1}


def _depth_in_cm(fields: set[str], path) -> tuple[str | None, float]:
    """The metadata's depth column and the factor that turns its values into cm."""
    from foramflow.io.tables import find_depth_column

    column = find_depth_column(fields, path)
    unit = column.partition("_")[2].lower() or None if column else None
    if unit not in _CM_PER_UNIT:
        raise InvalidInput(f"{path}: depth column {column!r}: give depths in cm, m or mm")
    return column, _CM_PER_UNIT[unit]


def _read_metadata(path: str | Path) -> tuple[dict, dict]:
    """Per-sample and per-path (sample, depth_cm) from a CSV."""
    by_sample, by_path = {}, {}
    check_size(path, Path(path).stat().st_size, MAX_TABLE_BYTES, "metadata table")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = set(reader.fieldnames or [])
        depth_column, to_cm = _depth_in_cm(fields, path)
        if "sample" not in fields and "path" not in fields:
            raise InvalidInput(f"{path}: needs a 'sample' or a 'path' column")
        for line, row in enumerate(reader, start=2):
            raw_depth = (row.get(depth_column) or "").strip()
            try:
                depth = float(raw_depth) * to_cm if raw_depth else None
            except ValueError:
                raise InvalidInput(
                    f"{path}: line {line}: depth {raw_depth!r} is not a number"
                ) from None
            depth = None if depth is not None and math.isnan(depth) else depth
            try:
                sample = sample_name((row.get("sample") or "").strip() or None)
            except InvalidName as err:
                raise InvalidName(f"{path}: line {line}: {err}") from None
            if row.get("path"):
                by_path[row["path"].strip()] = (sample, depth)
            elif sample:
                by_sample[sample] = (sample, depth)
    return by_sample, by_path
