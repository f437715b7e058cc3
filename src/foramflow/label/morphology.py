"""Size and shape per image of a label project, so the page can sort and filter by them.

The measures are those of :mod:`foramflow.imaging.measure` (µm at the project's scale):
crops that the segment step cut keep the row of its morphometrics table; any other crop is
measured here by segmenting it as a one-particle tray and keeping its largest region.
They live in the project's store, in a table of their own keyed by image id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from foramflow.errors import InvalidInput
from foramflow.imaging.scale import DEFAULT_PIXELS_PER_MM
from foramflow.io.images import ImageReadError, read_image
from foramflow.label.store import LabelStore

#: The measures shown on the page, all from :data:`foramflow.imaging.measure.MORPHOMETRIC_COLUMNS`.
MEASURES = (
    "equivalent_diameter_um",
    "area_um2",
    "aspect_ratio",
    "circularity",
    "solidity",
    "concavity",
)
SORTABLE = ("id", "sample", "label", *MEASURES)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS morphology (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    {", ".join(f"{name} REAL" for name in MEASURES)},
    pixels_per_mm REAL NOT NULL
)
"""


@dataclass(frozen=True)
class Range:
    """Keep images whose ``measure`` lies within [low, high] (either may be open)."""

    measure: str
    low: float | None = None
    high: float | None = None


def ensure_table(store: LabelStore) -> None:
    with store.write() as con:
        con.execute(_SCHEMA)


def save_segmented(store: LabelStore, root_id: int, particles: pd.DataFrame) -> int:
    """Keep the measures of the segment step's table (its ``path`` is relative to the root)."""
    ensure_table(store)
    ids = {
        row[1]: row[0]
        for row in store.query("SELECT id, relpath FROM images WHERE root_id = ?", (root_id,))
    }
    rows = [
        (ids[path], *(_number(row[name]) for name in MEASURES), float(row["pixels_per_mm"]))
        for path, (_, row) in zip(particles["path"], particles.iterrows(), strict=True)
        if path in ids
    ]
    _insert(store, rows)
    return len(rows)


def measure_missing(
    store: LabelStore, *, pixels_per_mm: float = DEFAULT_PIXELS_PER_MM, limit: int = 2000
) -> dict:
    """Measure up to ``limit`` images that have no measures yet; returns counts."""
    from foramflow.imaging.segment import SegmentationError, segment_image

    if not (pixels_per_mm > 0 and math.isfinite(pixels_per_mm)):
        raise InvalidInput(f"pixels per mm must be a positive number, not {pixels_per_mm}")
    ensure_table(store)
    missing = [
        row[0]
        for row in store.query(
            "SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM morphology)"
            " ORDER BY id LIMIT ?",
            (limit,),
        )
    ]
    paths = store.image_paths(missing)
    rows, failed = [], []
    for image_id in missing:
        try:
            image = read_image(paths[image_id])
            particles = segment_image(image, pixels_per_mm=pixels_per_mm, min_area_um2=0.0)[
                "particles"
            ]
        except (ImageReadError, SegmentationError):
            particles = None
        if particles is None or particles.empty:  # kept as unmeasurable, not tried again
            failed.append(image_id)
            rows.append((image_id, *(None for _ in MEASURES), pixels_per_mm))
            continue
        largest = particles.loc[particles["area_um2"].idxmax()]
        rows.append((image_id, *(_number(largest[n]) for n in MEASURES), pixels_per_mm))
    _insert(store, rows)
    return {"measured": len(rows) - len(failed), "failed": len(failed), "left": _left(store)}


def measured_page(
    store: LabelStore,
    *,
    ranges: list[Range],
    sort: str = "id",
    descending: bool = False,
    offset: int = 0,
    limit: int = 200,
) -> tuple[int, list[dict]]:
    """(total, rows) of images with their measures, filtered by ``ranges``, sorted."""
    if sort not in SORTABLE:
        raise InvalidInput(f"cannot sort by {sort!r}; choose one of {', '.join(SORTABLE)}")
    ensure_table(store)
    clauses, params = [], []
    for item in ranges:
        if item.measure not in MEASURES:
            raise InvalidInput(f"no measure {item.measure!r}; choose one of {', '.join(MEASURES)}")
        for bound, sign in ((item.low, ">="), (item.high, "<=")):
            if bound is not None:
                clauses.append(f"m.{item.measure} {sign} ?")
                params.append(bound)
    where = " AND ".join(clauses) or "1"
    column = f"i.{sort}" if sort in ("id", "sample", "label") else f"m.{sort}"
    order = f"{column} IS NULL, {column} {'DESC' if descending else 'ASC'}, i.id"
    base = f"FROM images i LEFT JOIN morphology m ON m.image_id = i.id WHERE {where}"
    total = store.query(f"SELECT COUNT(*) {base}", params)[0][0]
    columns = ", ".join(f"m.{name}" for name in MEASURES)
    ids_and_measures = store.query(
        f"SELECT i.id, {columns} {base} ORDER BY {order} LIMIT ? OFFSET ?",
        [*params, limit, offset],
    )
    rows = {row["id"]: row for row in store.rows([r[0] for r in ids_and_measures])}
    out = []
    for record in ids_and_measures:
        row = dict(rows[record[0]])
        row.update({name: record[k + 1] for k, name in enumerate(MEASURES)})
        out.append(row)
    return total, out


def _left(store: LabelStore) -> int:
    return store.query(
        "SELECT COUNT(*) FROM images WHERE id NOT IN (SELECT image_id FROM morphology)"
    )[0][0]


def _insert(store: LabelStore, rows: list[tuple]) -> None:
    names = ", ".join(MEASURES)
    marks = ", ".join("?" * (len(MEASURES) + 2))
    with store.write() as con:
        con.executemany(
            f"INSERT OR REPLACE INTO morphology(image_id, {names}, pixels_per_mm) VALUES ({marks})",
            rows,
        )


def _number(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
