"""The app's import page and its labelling aids: routes over the same store and guard.

Import brings images into the project from a folder of crops, a ParticleTrieur project, a
FlowCam export (split by :func:`foramflow.io.flowcam.split_collages`) or tray images cut by
the segment step (:func:`foramflow.imaging.steps.segment_folder`, run in the background,
after a preview of one tray). Samples and depths come from the first folder, a regex or a
CSV (:class:`foramflow.classify.samples.SampleRule`), previewed before they are applied.
Paths are folders on the machine that runs the app, as for pre-labelling; what the import
writes (crops of trays and collages) goes under ``PROJECT_DIR/imports``.

The labelling aids: the nearest images of one image ("more like this") and the labels its
validated neighbours suggest, from the features the active-learning views already keep,
and size and shape per image (:mod:`foramflow.label.morphology`) to sort and filter by.
"""

from __future__ import annotations

import base64
import io
import math
import shutil
import tempfile
import threading
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from foramflow.classify.samples import SampleRule, assign_samples
from foramflow.errors import InvalidInput
from foramflow.imaging.scale import DEFAULT_PIXELS_PER_MM
from foramflow.io.images import is_image_file
from foramflow.label import morphology
from foramflow.label.pages import render
from foramflow.label.store import LabelStore, sample_name

PREVIEW_PIXELS = 900
PREVIEW_ROWS = 200
_CM_PER_UNIT = {None: 1.0, "cm": 1.0, "m": 100.0, "mm": 0.1}

ServerPath = Annotated[str, Field(min_length=1, max_length=4096)]
ImageId = Annotated[int, PathParam(ge=1, le=2**62)]


class SampleRequest(BaseModel):
    """Where images are and how their samples are named."""

    folder: ServerPath
    regex: Annotated[str, Field(max_length=500)] | None = None
    table: ServerPath | None = None

    def rule(self) -> SampleRule:
        return SampleRule(regex=self.regex or None, table=self.table or None)


class SegmentOptions(BaseModel):
    """The segment step's options the form offers (the CLI's defaults)."""

    pixels_per_mm: float = Field(DEFAULT_PIXELS_PER_MM, gt=0, le=1e6)
    threshold: Literal["auto"] | Annotated[float, Field(ge=0, le=1)] = "auto"
    min_area_um2: float = Field(3000.0, ge=0, le=1e9)
    split: bool = False


class SegmentRequest(SampleRequest):
    options: SegmentOptions = SegmentOptions()


class ProjectRequest(BaseModel):
    project: ServerPath


class MeasureRequest(BaseModel):
    pixels_per_mm: float = Field(DEFAULT_PIXELS_PER_MM, gt=0, le=1e6)


class SegmentJob:
    """At most one segmentation run at a time, in a background thread the page polls."""

    def __init__(self):
        self.lock = threading.Lock()
        self.state = {"running": False, "done": 0, "total": 0, "message": "", "added": 0}

    def start(self, store: LabelStore, request: SegmentRequest) -> None:
        rule = request.rule()
        folder = _existing_folder(request.folder)
        with self.lock:
            if self.state["running"]:
                raise HTTPException(409, "a segmentation run is in progress")
            self.state = {"running": True, "done": 0, "total": 0, "message": "starting"}
            self.state["added"] = 0
        thread = threading.Thread(
            target=self._run, args=(store, folder, request.options, rule), daemon=True
        )
        thread.start()

    def _run(self, store: LabelStore, folder: Path, options: SegmentOptions, rule) -> None:
        from foramflow.imaging.steps import segment_folder

        out = _new_import_folder(store, "segment")
        try:
            result = segment_folder(folder, out, **options.model_dump(), progress=_Polled(self))
            added, root_id = _register(store, out, rule)
            morphology.save_segmented(store, root_id, result.particles)
            failed = f"; {len(result.failed)} trays unreadable" if result.failed else ""
            message = f"{len(result.segmented)} trays cut into {added} crops{failed}"
            self.state.update(added=added)
        except Exception as err:  # reported to the page, not lost in a thread
            shutil.rmtree(out, ignore_errors=True)
            message = f"failed: {err}"
        self.state.update(running=False, message=message)


class _Polled:
    """A :class:`foramflow.progress.Progress` that writes into a job's state."""

    def __init__(self, job: SegmentJob):
        self.job = job

    def message(self, text: str, *, warning: bool = False) -> None:
        self.job.state["message"] = text

    def task(self, description: str, total: int | None, **fields: str):
        self.job.state.update(total=total or 0, done=0)
        return self

    def advance(self, n: int = 1, **fields: str) -> None:
        self.job.state["done"] += n

    def update(self, *, total: int | None = None, completed: int | None = None, **fields):
        if total is not None:
            self.job.state["total"] = total
        if completed is not None:
            self.job.state["done"] = completed

    def done(self) -> None:
        pass


def import_router(store: LabelStore, with_urls) -> APIRouter:
    """The import page and routes, and the labelling aids, for ``store``."""
    router = APIRouter()
    job = SegmentJob()

    @router.get("/import", response_class=HTMLResponse, include_in_schema=False)
    def import_page() -> str:
        return render("import.html", "import")

    @router.post("/api/import/samples")
    def preview_samples(request: SampleRequest) -> dict:
        """The sample and depth each image under ``folder`` would get, before any import."""
        folder = _existing_folder(request.folder)
        paths = _image_paths(folder)
        samples, depths = _assign(paths, request.rule(), folder.name)
        per_sample = Counter(samples)
        depth_of = dict(zip(samples, depths, strict=True))
        return {
            "total": len(paths),
            "rows": [
                {"path": p, "sample": s, "depth_cm": d}
                for p, s, d in list(zip(paths, samples, depths, strict=True))[:PREVIEW_ROWS]
            ],
            "samples": [
                {"sample": s, "depth_cm": depth_of[s], "images": n}
                for s, n in sorted(per_sample.items())
            ],
        }

    @router.post("/api/import/crops")
    def import_crops(request: SampleRequest) -> dict:
        """Register a folder of crops, samples by the rule given."""
        folder = _existing_folder(request.folder)
        rule = request.rule()
        _assign(_image_paths(folder), rule, folder.name)  # refuse a bad rule before adding
        added, _root = _register(store, folder, rule)
        return {"added": added}

    @router.post("/api/import/particletrieur")
    def import_particletrieur(request: ProjectRequest) -> dict:
        """Add a ParticleTrieur project's images, classes and labels."""
        from foramflow.label.export import import_particletrieur

        project = Path(request.project)
        if project.is_dir():
            project = project / "project.xml"
        if not project.is_file():
            raise InvalidInput(f"{project}: no such ParticleTrieur project file")
        return {"added": import_particletrieur(store, project)}

    @router.post("/api/import/flowcam")
    def import_flowcam(request: SampleRequest) -> dict:
        """Split a FlowCam export's collages into crops under the project and register them."""
        from foramflow.io.flowcam import split_collages

        folder = _existing_folder(request.folder)
        rule = request.rule()
        out = _new_import_folder(store, "flowcam")
        try:
            crops = split_collages(folder, out)
            added, _root = _register(store, out, rule)
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            raise
        return {"added": added, "crops": len(crops), "folder": str(out)}

    @router.post("/api/import/segment/preview")
    def preview_segment(request: SegmentRequest) -> dict:
        """Segment the first tray under ``folder`` alone: its crop count and boxes."""
        from foramflow.imaging.steps import DEPTH_INDEX_SUFFIX, DEPTH_UM_SUFFIX, segment_folder

        folder = _existing_folder(request.folder)
        maps = (DEPTH_INDEX_SUFFIX, DEPTH_UM_SUFFIX)  # written beside fused images by stacking
        trays = [p for p in _image_paths(folder) if not p.endswith(maps)]
        if not trays:
            raise InvalidInput(f"{folder}: no tray images")
        tray = folder / trays[0]
        with tempfile.TemporaryDirectory(prefix="foramflow-preview-") as scratch:
            result = segment_folder(tray, scratch, **request.options.model_dump())
        if result.failed:
            raise InvalidInput(next(iter(result.failed.values())))
        boxes = [
            [int(row[k]) for k in ("crop_left_px", "crop_top_px", "crop_side_px")]
            for _, row in result.particles.iterrows()
        ]
        return {
            "tray": trays[0],
            "trays": len(trays),
            "count": len(boxes),
            "boxes": boxes,
            "image": _boxes_picture(tray, boxes),
        }

    @router.post("/api/import/segment", status_code=202)
    def start_segment(request: SegmentRequest) -> dict:
        """Segment every tray under ``folder`` in the background; poll the GET for progress."""
        job.start(store, request)
        return job.state

    @router.get("/api/import/segment")
    def segment_state() -> dict:
        return job.state

    @router.get("/api/morphology")
    def measured(
        sort: Literal[morphology.SORTABLE] = "id",  # type: ignore[valid-type]
        descending: bool = False,
        measure: Annotated[str | None, Query(max_length=40)] = None,
        low: Annotated[float | None, Query(ge=-1e12, le=1e12)] = None,
        high: Annotated[float | None, Query(ge=-1e12, le=1e12)] = None,
        offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> dict:
        """Images with size and shape, sorted by ``sort``, ``measure`` within [low, high]."""
        ranges = [morphology.Range(measure, low, high)] if measure else []
        total, rows = morphology.measured_page(
            store, ranges=ranges, sort=sort, descending=descending, offset=offset, limit=limit
        )
        return {"total": total, "offset": offset, "items": with_urls(rows)}

    @router.post("/api/morphology/measure")
    def measure(request: MeasureRequest) -> dict:
        """Measure images that have no size and shape yet (crops not cut by the app)."""
        return morphology.measure_missing(store, pixels_per_mm=request.pixels_per_mm)

    @router.get("/api/images/{image_id}/similar")
    def similar(image_id: ImageId, n: Annotated[int, Query(ge=1, le=200)] = 12) -> dict:
        """The ``n`` nearest images ("more like this") and the labels their votes suggest."""
        from foramflow.label.active import features_for

        rows = store.query("SELECT id, label FROM images ORDER BY id")
        labels = {row[0]: row[1] for row in rows}
        if image_id not in labels:
            raise KeyError(image_id)
        kept, vectors, _ = features_for(store, list(labels))
        if image_id not in kept:
            raise HTTPException(404, f"image {image_id} cannot be read")
        mine = vectors[kept.index(image_id)]
        distances = np.linalg.norm(vectors - mine, axis=1)
        order = [kept[i] for i in np.argsort(distances, kind="stable") if kept[i] != image_id]
        nearest = order[:n]
        distance_of = dict(zip(kept, distances.tolist(), strict=True))
        items = with_urls(store.rows(nearest))
        for item in items:
            item["distance"] = round(distance_of[item["id"]], 4)
        return {"items": items, "suggestions": _votes(order, labels, distance_of)}

    return router


def _votes(order: list[int], labels: dict, distance_of: dict, k: int = 5) -> list[dict]:
    """Labels of the ``k`` nearest validated images, weighted by closeness, best first."""
    voters = [i for i in order if labels[i] is not None][:k]
    weights: Counter = Counter()
    for i in voters:
        weights[labels[i]] += 1.0 / (1e-6 + distance_of[i])
    total = sum(weights.values())
    return [
        {
            "label": label,
            "score": round(weight / total, 4),
            "votes": sum(labels[i] == label for i in voters),
        }
        for label, weight in weights.most_common()
    ]


def _existing_folder(text: str) -> Path:
    folder = Path(text).expanduser()
    if not folder.is_dir():
        raise InvalidInput(f"{folder}: no such folder")
    return folder.resolve()


def _image_paths(folder: Path) -> list[str]:
    """Image paths under ``folder``, relative to it (POSIX), sorted; links are not followed."""
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if is_image_file(p) and not p.is_symlink() and p.is_file()
    )


def _assign(paths: list[str], rule: SampleRule, root_name: str):
    """Samples (checked as names) and depths in cm (None when unknown) of ``paths``."""
    samples, depths = assign_samples(paths, rule, root_name=root_name)
    per_unit = _CM_PER_UNIT.get(rule.depth_unit(), 1.0)
    return (
        [sample_name(s) for s in samples],
        [None if math.isnan(d) else d * per_unit for d in depths],
    )


def _register(store: LabelStore, folder: Path, rule: SampleRule) -> tuple[int, int]:
    """Add the images under ``folder``; with a regex or table, set their samples by it."""
    added, _problems = store.add_images(folder)
    root_id = store.add_root(folder)
    if rule.regex is None and rule.table is None:
        return added, root_id
    rows = store.query("SELECT id, relpath FROM images WHERE root_id = ?", (root_id,))
    samples, depths = _assign([r[1] for r in rows], rule, folder.name)
    with store.write() as con:
        con.executemany(
            "UPDATE images SET sample = ?, depth_cm = ? WHERE id = ?",
            [(s, d, r[0]) for r, s, d in zip(rows, samples, depths, strict=True)],
        )
    return added, root_id


def _new_import_folder(store: LabelStore, kind: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    out = store.project_dir / "imports" / f"{kind}-{stamp}"
    out.mkdir(parents=True)
    return out


def _boxes_picture(tray: Path, boxes: list[list[int]]) -> str:
    """The tray, at most :data:`PREVIEW_PIXELS` wide, with each crop's box drawn; a data URL."""
    from PIL import Image, ImageDraw

    from foramflow.io.images import TRAY_MAX_PIXELS, read_image

    pixels = read_image(tray, max_pixels=TRAY_MAX_PIXELS)
    picture = Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8)).convert("RGB")
    scale = min(1.0, PREVIEW_PIXELS / max(picture.size))
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    picture = picture.resize(size)
    draw = ImageDraw.Draw(picture)
    for left, top, side in boxes:
        corners = [left * scale, top * scale, (left + side) * scale, (top + side) * scale]
        draw.rectangle(corners, outline=(230, 40, 40), width=2)
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
