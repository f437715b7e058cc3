"""EcoTaxa TSV export: a folder, or one zip, that EcoTaxa's import takes as it is.

EcoTaxa's import rules (its ``BO/TSVFile.py`` and ``BO/Bundle.py``), which
:func:`write_ecotaxa` follows:

* the import looks for files named ``ecotaxa*.tsv`` anywhere in the folder or zip; an
  image path (``img_file_name``) is relative to the TSV's folder, and the image exists, in
  PNG, JPEG or GIF (a TIFF or BMP image is written as PNG);
* a TSV is read as latin-1 unless it starts with a UTF-8 byte-order mark, so the file is
  UTF-8 with the mark, and any Unicode name arrives as written;
* the first line holds lowercase column names ``<table>_<field>`` with table one of
  ``object``, ``sample``, ``acq``, ``process``, ``img``; the second line holds each
  column's type, ``[t]`` (text) or ``[f]`` (number);
* ``object_id`` is present, never empty and unique;
* ``object_annotation_status`` is ``validated``, ``predicted`` or ``dubious``, given with a
  category and only with one; dates are ``YYYYMMDD`` and times ``HHMMSS``;
* every ``object_annotation_person_name`` must name an EcoTaxa user before the import goes
  on, so predicted rows name no one (EcoTaxa drops the person of a prediction anyway); the
  model that predicted goes to ``object_prediction_model``;
* text values are cut to 250 characters, the longest EcoTaxa stores.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import unicodedata
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from foramflow.errors import InvalidInput, OutputError
from foramflow.io.files import atomic_path
from foramflow.io.images import read_image

MAX_TEXT = 250
TABLE_PREFIXES = ("object_", "sample_", "acq_", "process_", "img_")
STATUSES = ("validated", "predicted", "dubious")
ENCODING = "utf-8-sig"  # UTF-8 behind a byte-order mark: what EcoTaxa reads as UTF-8
IMAGES = "images"
KEPT_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif")  # EcoTaxa's formats; others become PNG

_COLUMNS = {  # column: type
    "img_file_name": "[t]",
    "img_rank": "[f]",
    "object_id": "[t]",
    "object_annotation_category": "[t]",
    "object_annotation_status": "[t]",
    "object_annotation_person_name": "[t]",
    "object_annotation_date": "[t]",
    "object_annotation_time": "[t]",
    "object_prediction_model": "[t]",
    "object_depth_min": "[f]",
    "object_depth_max": "[f]",
    "object_score": "[f]",
    "sample_id": "[t]",
}


@dataclass
class EcoTaxaObject:
    """One image to export; ``depth_m`` in metres (EcoTaxa's depth unit).

    ``annotator`` and ``annotated_at`` are written for a person's status (validated,
    dubious); ``model`` and ``score`` for a prediction.
    """

    path: Path
    category: str | None = None
    status: str | None = None
    annotator: str | None = None
    annotated_at: datetime | None = None
    sample: str | None = None
    depth_m: float | None = None
    score: float | None = None
    model: str | None = None


def write_ecotaxa(
    out: str | Path, objects: Sequence[EcoTaxaObject], *, name: str = "foramflow"
) -> Path:
    """Write ``ecotaxa_<name>.tsv`` and the images, in ``images/`` beside it, into ``out``.

    ``out`` is a folder (the TSV's path is returned) or, when it ends in ``.zip``, a zip
    file holding the same at its top level (its path is returned; it is replaced whole).
    Raises :class:`OutputError` when a link in the folder would lead a file out of it.
    """
    out = Path(out)
    tsv_name = f"ecotaxa_{_safe_id(name)}.tsv"
    rows, images = _rows(objects)
    text = _tsv_text(rows)
    if out.suffix.lower() == ".zip":
        _write_zip(out, tsv_name, text, images)
        return out
    root = out.resolve()
    _inside(root, out / IMAGES).mkdir(parents=True, exist_ok=True)
    for source, name_in_out in images:
        _copy_image(source, _inside(root, out / name_in_out))
    tsv_path = _inside(root, out / tsv_name)
    tsv_path.write_text(text, encoding=ENCODING, newline="")
    return tsv_path


def _rows(objects: Sequence[EcoTaxaObject]) -> tuple[list[dict], list[tuple[Path, str]]]:
    """The TSV rows, and (image, its path relative to the TSV) for every object."""
    used_ids: set[str] = set()
    rows, images = [], []
    for item in objects:
        _check_status(item)
        object_id = _unique(_safe_id(f"{item.sample or 'obj'}_{Path(item.path).stem}"), used_ids)
        suffix = Path(item.path).suffix.lower()
        image_name = f"{IMAGES}/{object_id}{suffix if suffix in KEPT_SUFFIXES else '.png'}"
        images.append((Path(item.path), image_name))
        by_person = item.status in ("validated", "dubious")
        when = item.annotated_at if by_person else None
        rows.append(
            {
                "img_file_name": image_name,
                "img_rank": 0,
                "object_id": object_id,
                "object_annotation_category": item.category,
                "object_annotation_status": item.status,
                "object_annotation_person_name": item.annotator if by_person else None,
                "object_annotation_date": when.strftime("%Y%m%d") if when else None,
                "object_annotation_time": when.strftime("%H%M%S") if when else None,
                "object_prediction_model": item.model if item.status == "predicted" else None,
                "object_depth_min": item.depth_m,
                "object_depth_max": item.depth_m,
                "object_score": item.score if item.status == "predicted" else None,
                "sample_id": item.sample,
            }
        )
    return rows, images


def _check_status(item: EcoTaxaObject) -> None:
    """EcoTaxa refuses a status without a category, and a category without a status."""
    if item.status is not None and item.status not in STATUSES:
        raise InvalidInput(f"{item.path}: annotation status {item.status!r} not in {STATUSES}")
    if (item.status is None) != (item.category is None):
        raise InvalidInput(f"{item.path}: a category and a status go together")


def _write_zip(out: Path, tsv_name: str, text: str, images: list[tuple[Path, str]]) -> None:
    """The TSV at the zip's top level, the images (stored, as they are compressed) beside."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        archive.writestr(tsv_name, text.encode(ENCODING), compress_type=zipfile.ZIP_DEFLATED)
        for source, name_in_zip in images:
            if Path(name_in_zip).suffix == source.suffix.lower():
                archive.write(source, name_in_zip, compress_type=zipfile.ZIP_STORED)
            else:
                with archive.open(name_in_zip, "w") as handle:
                    _png(source).save(handle, format="PNG")


def _copy_image(source: Path, target: Path) -> None:
    if target.suffix == source.suffix.lower():
        shutil.copyfile(source, target)
    else:
        _png(source).save(target, format="PNG")


def _png(source: Path):
    """The image as 8-bit pixels (PNG), read as foramflow reads it."""
    from PIL import Image

    return Image.fromarray(np.round(read_image(source) * 255).astype(np.uint8))


def _inside(root: Path, path: Path) -> Path:
    """``path`` when it stays inside the resolved folder ``root`` once links are followed."""
    if not path.resolve().is_relative_to(root):
        raise OutputError(f"{path}: leads out of the export folder {root}, not written")
    return path


def _tsv_text(rows: list[dict]) -> str:
    for column in _COLUMNS:
        if column != column.lower() or not column.startswith(TABLE_PREFIXES):
            raise InvalidInput(f"{column}: not a valid EcoTaxa column name")
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(_COLUMNS)
    writer.writerow(_COLUMNS.values())
    for row in rows:
        writer.writerow(_cell(row[c], _COLUMNS[c]) for c in _COLUMNS)
    return buffer.getvalue()


def _cell(value, kind: str) -> str:
    if value is None:
        return ""
    if kind == "[f]":
        return repr(float(value))
    return _ROW_BREAKS.sub(" ", str(value)).strip()[:MAX_TEXT]


# Tabs, line ends and other control characters, which would split a TSV row or a cell.
_ROW_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def _safe_id(text: str) -> str:
    """ASCII letters, digits, '-', '_' and '.' only (accents dropped), at most 200
    characters (room for a suffix)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_text).strip("_")[:200] or "object"


def _unique(candidate: str, used: set[str]) -> str:
    unique, n = candidate, 1
    while unique in used:
        n += 1
        unique = f"{candidate}_{n}"
    used.add(unique)
    return unique
