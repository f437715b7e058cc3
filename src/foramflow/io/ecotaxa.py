"""EcoTaxa TSV export: a folder EcoTaxa imports as is (TSV + the images beside it).

EcoTaxa's import rules, which :func:`write_ecotaxa` enforces:

* the first line holds lowercase column names ``<table>_<field>`` with table one of
  ``object``, ``sample``, ``acq``, ``process``, ``img``; the second line holds each
  column's type, ``[t]`` (text) or ``[f]`` (number);
* ``object_id`` is present, never empty and unique; ``img_file_name`` is the image path
  relative to the TSV and the image exists;
* ``object_annotation_status`` is ``validated``, ``predicted`` or ``dubious`` (or empty);
  dates are ``YYYYMMDD`` and times ``HHMMSS``;
* text values are cut to 250 characters, the longest EcoTaxa stores.
"""

from __future__ import annotations

import csv
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from foramflow.errors import OutputError

MAX_TEXT = 250
TABLE_PREFIXES = ("object_", "sample_", "acq_", "process_", "img_")
STATUSES = ("validated", "predicted", "dubious")

_COLUMNS = {  # column: type
    "img_file_name": "[t]",
    "img_rank": "[f]",
    "object_id": "[t]",
    "object_annotation_category": "[t]",
    "object_annotation_status": "[t]",
    "object_annotation_person_name": "[t]",
    "object_annotation_date": "[t]",
    "object_annotation_time": "[t]",
    "object_depth_min": "[f]",
    "object_depth_max": "[f]",
    "object_score": "[f]",
    "sample_id": "[t]",
}


@dataclass
class EcoTaxaObject:
    """One image to export; ``depth_m`` in metres (EcoTaxa's depth unit)."""

    path: Path
    category: str | None = None
    status: str | None = None
    annotator: str | None = None
    annotated_at: datetime | None = None
    sample: str | None = None
    depth_m: float | None = None
    score: float | None = None


def write_ecotaxa(
    out_dir: str | Path, objects: Sequence[EcoTaxaObject], *, name: str = "foramflow"
) -> Path:
    """Copy the images into ``out_dir/images`` and write ``out_dir/ecotaxa_<name>.tsv``.

    Raises :class:`OutputError` when a link in ``out_dir`` would lead a file out of it.
    """
    out_dir = Path(out_dir)
    root = out_dir.resolve()
    _inside(root, out_dir / "images").mkdir(parents=True, exist_ok=True)
    tsv_path = _inside(root, out_dir / f"ecotaxa_{_safe_id(name)}.tsv")
    used_ids: set[str] = set()
    rows = []
    for item in objects:
        if item.status is not None and item.status not in STATUSES:
            raise ValueError(f"{item.path}: annotation status {item.status!r} not in {STATUSES}")
        object_id = _unique(_safe_id(f"{item.sample or 'obj'}_{Path(item.path).stem}"), used_ids)
        image_name = f"images/{object_id}{Path(item.path).suffix.lower()}"
        shutil.copyfile(item.path, _inside(root, out_dir / image_name))
        when = item.annotated_at
        rows.append(
            {
                "img_file_name": image_name,
                "img_rank": 0,
                "object_id": object_id,
                "object_annotation_category": item.category,
                "object_annotation_status": item.status,
                "object_annotation_person_name": item.annotator,
                "object_annotation_date": when.strftime("%Y%m%d") if when else None,
                "object_annotation_time": when.strftime("%H%M%S") if when else None,
                "object_depth_min": item.depth_m,
                "object_depth_max": item.depth_m,
                "object_score": item.score,
                "sample_id": item.sample,
            }
        )
    _write_tsv(tsv_path, rows)
    return tsv_path


def _inside(root: Path, path: Path) -> Path:
    """``path`` when it stays inside the resolved folder ``root`` once links are followed."""
    if not path.resolve().is_relative_to(root):
        raise OutputError(f"{path}: leads out of the export folder {root}, not written")
    return path


def _write_tsv(path: Path, rows: list[dict]) -> None:
    for column in _COLUMNS:
        if column != column.lower() or not column.startswith(TABLE_PREFIXES):
            raise ValueError(f"{column}: not a valid EcoTaxa column name")
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(_COLUMNS)
        writer.writerow(_COLUMNS.values())
        for row in rows:
            writer.writerow(_cell(row[c], _COLUMNS[c]) for c in _COLUMNS)


def _cell(value, kind: str) -> str:
    if value is None:
        return ""
    if kind == "[f]":
        return repr(float(value))
    text = re.sub(r"[\t\r\n]+", " ", str(value)).strip()
    return text[:MAX_TEXT]


def _safe_id(text: str) -> str:
    """Letters, digits, '-', '_' and '.' only, at most 200 characters (room for a suffix)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:200] or "object"


def _unique(candidate: str, used: set[str]) -> str:
    unique, n = candidate, 1
    while unique in used:
        n += 1
        unique = f"{candidate}_{n}"
    used.add(unique)
    return unique
