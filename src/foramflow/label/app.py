"""The labelling web app: a FastAPI server over one :class:`LabelStore`.

The page (``templates/index.html`` + ``static/label.js``) asks the JSON API below for pages
of thumbnails and sends label changes back; the server keeps no state besides the store
and at most one running pre-labelling job.

Security (the rules themselves live in :mod:`foramflow.label.guard`):

* The CLI binds to 127.0.0.1 by default. Bound to a loopback address (127.0.0.0/8,
  ``::1``, ``localhost``) the app needs no token and answers only requests whose ``Host``
  is a loopback name (no DNS rebinding). Bound to any other address, every request needs
  the token printed at start: as ``?token=`` once (the page then keeps it in a cookie),
  or as an ``Authorization: Bearer`` header.
* Cross-site requests: a POST, PUT, PATCH or DELETE whose ``Origin`` (else ``Referer``,
  else ``Sec-Fetch-Site``) shows another origin than the app's own ``Host`` is refused
  with 403, on loopback too, so no other web page can label, undo or export. The page's
  own ``fetch`` calls carry its own origin; a request with none of these headers (a
  script, curl) passes, and still needs the token where one is required.
* Size: request bodies over 1 MiB and label changes of more than 10,000 images are
  refused with 413.
* Files are only served from registered image roots, after resolving symbolic links;
  thumbnails are decoded at most two at a time, within the images' memory caps;
  class and sample names are checked by the store (they become folder and file names),
  and exports write nothing outside their folder.
"""

from __future__ import annotations

import getpass
import hmac
import io
import shutil
import threading
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel, Field

from foramflow.errors import ForamflowError
from foramflow.io.images import ImageReadError, is_image_file, read_thumbnail
from foramflow.label import active, export
from foramflow.label.guard import (
    MAX_IDS_PER_REQUEST,
    STATE_CHANGING,
    BodyLimit,
    foreign_origin,
    host_name,
    is_loopback_name,
)
from foramflow.label.pages import render
from foramflow.label.prelabel import prelabel
from foramflow.label.presence import presence_router
from foramflow.label.routes_import import import_router
from foramflow.label.routes_jobs import jobs_router
from foramflow.label.store import TARGET_PER_CLASS, ImageFilter, LabelStore, PathRefused

HERE = Path(__file__).parent
TOKEN_COOKIE = "foramflow_token"
THUMB_PIXELS = 160
#: Thumbnails decoded at once: each may take one image's decoded bytes (within the caps of
#: :mod:`foramflow.io.images`), so the app's memory stays bounded however many are asked for.
THUMBNAILS_AT_ONCE = 2

ImageId = Annotated[int, PathParam(ge=1, le=2**62)]
Text = Annotated[str, Field(max_length=200)]


class LabelRequest(BaseModel):
    ids: list[Annotated[int, Field(ge=1, le=2**62)]]
    label: Text | None = None
    user: Text | None = None


class UndoRequest(BaseModel):
    user: Text | None = None


class AcceptRequest(BaseModel):
    label: Text | None = None
    min_score: float = Field(0.95, ge=0.0, le=1.0)
    user: Text | None = None


class ClassRequest(BaseModel):
    name: Text
    group: Text = ""


class RenameRequest(BaseModel):
    old: Text
    new: Text


class MergeRequest(BaseModel):
    sources: list[Text] = Field(min_length=1, max_length=1000)
    target: Text
    user: Text | None = None


class PrelabelRequest(BaseModel):
    bundle: Annotated[str, Field(min_length=1, max_length=4096)]


class ExportRequest(BaseModel):
    kind: Literal["training-set", "csv", "particletrieur", "ecotaxa"]
    hard_links: bool = False


class PrelabelJob:
    """At most one pre-labelling run at a time, in a background thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.state = {"running": False, "done": 0, "total": 0, "message": ""}

    def start(self, store: LabelStore, bundle: str) -> None:
        from foramflow.bundle import Bundle, BundleError

        try:
            Bundle.load(bundle)
        except BundleError as err:
            raise HTTPException(400, str(err)) from None
        with self.lock:
            if self.state["running"]:
                raise HTTPException(409, "a pre-labelling run is in progress")
            self.state = {"running": True, "done": 0, "total": 0, "message": "starting"}
        threading.Thread(target=self._run, args=(store, bundle), daemon=True).start()

    def _run(self, store: LabelStore, bundle: str) -> None:
        def progress(done: int, total: int) -> None:
            self.state.update(done=done, total=total)

        try:
            count, problems = prelabel(store, bundle, progress=progress)
            message = f"{count} images predicted" + (
                f"; {len(problems)} unreadable, e.g. {problems[0]}" if problems else ""
            )
        except Exception as err:  # reported to the page, not lost in a thread
            message = f"failed: {err}"
        self.state.update(running=False, message=message)


def create_app(project_dir: str | Path, *, token: str | None = None) -> FastAPI:
    """The app for the project in ``project_dir``; with ``token``, every request needs it."""
    store = LabelStore(project_dir)
    job = PrelabelJob()
    thumbnail_slots = threading.BoundedSemaphore(THUMBNAILS_AT_ONCE)
    app = FastAPI(title="foramflow label", version="1")
    app.state.store = store

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if token is None:
            host = host_name(request.headers.get("host") or "")
            if not is_loopback_name(host):
                return JSONResponse({"detail": f"unknown host {host!r}"}, status_code=400)
        elif not token_given(request):
            return JSONResponse({"detail": "token required"}, status_code=401)
        if request.method in STATE_CHANGING and (origin := foreign_origin(request.headers)):
            return JSONResponse(
                {"detail": f"cross-site request from {origin} refused"}, status_code=403
            )
        response = await call_next(request)
        if token is not None and request.query_params.get("token"):
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    def token_given(request: Request) -> bool:
        given = (
            request.query_params.get("token")
            or request.cookies.get(TOKEN_COOKIE)
            or request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        )
        return bool(given) and hmac.compare_digest(given.encode(), token.encode())

    app.add_middleware(BodyLimit)

    @app.exception_handler(PathRefused)
    async def refused(_request, err):
        return JSONResponse({"detail": str(err)}, status_code=403)

    @app.exception_handler(KeyError)
    async def not_found(_request, err):
        return JSONResponse({"detail": f"not found: {err}"}, status_code=404)

    @app.exception_handler(ValueError)
    @app.exception_handler(ForamflowError)
    async def bad_value(_request, err):
        return JSONResponse({"detail": str(err)}, status_code=400)

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    default_user = getpass.getuser()

    def user_of(name: str | None) -> str:
        return (name or "").strip() or default_user

    def with_urls(rows: list[dict]) -> list[dict]:
        for row in rows:
            row["thumb"] = f"/api/images/{row['id']}/thumb"
            row["full"] = f"/files/{row['root_id']}/{quote(row['relpath'])}"
            row["name"] = row["relpath"].rsplit("/", 1)[-1]
        return rows

    app.include_router(import_router(store, with_urls))
    app.include_router(jobs_router(store))
    app.include_router(presence_router(store.project_dir))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return render("index.html", "label")

    @app.get("/api/project")
    def project() -> dict:
        """Name, image counts by status, samples, and defaults for the page."""
        return {
            "name": store.project_dir.name,
            "total": store.count(),
            "statuses": store.status_counts(),
            "samples": store.samples(),
            "user": default_user,
            "target_per_class": TARGET_PER_CLASS,
        }

    @app.get("/api/classes")
    def classes() -> list[dict]:
        """Classes with their group and live counts; ``below_target`` under 200 validated."""
        return store.classes()

    @app.post("/api/classes")
    def create_class(request: ClassRequest) -> list[dict]:
        store.create_class(request.name, group=request.group)
        return store.classes()

    @app.post("/api/classes/rename")
    def rename_class(request: RenameRequest) -> list[dict]:
        store.rename_class(request.old, request.new)
        return store.classes()

    @app.post("/api/classes/merge")
    def merge_classes(request: MergeRequest) -> list[dict]:
        store.merge_classes(request.sources, request.target, user=user_of(request.user))
        return store.classes()

    @app.post("/api/classes/group")
    def set_group(request: ClassRequest) -> list[dict]:
        store.set_group(request.name, request.group)
        return store.classes()

    @app.get("/api/images")
    def images(
        label: Annotated[str | None, Query(max_length=200)] = None,
        status: Literal["unlabelled", "predicted", "validated"] | None = None,
        sample: Annotated[str | None, Query(max_length=200)] = None,
        min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
        max_score: Annotated[float | None, Query(ge=0, le=1)] = None,
        offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> dict:
        """One page of the grid, filtered; ``label`` matches validated, else predicted."""
        where = ImageFilter(label, status, sample, min_score, max_score)
        return {
            "total": store.count(where),
            "offset": offset,
            "items": with_urls(store.page(where, offset=offset, limit=limit)),
        }

    @app.get("/api/images/{image_id}")
    def image(image_id: ImageId) -> dict:
        """One image with its full label history."""
        rows = with_urls(store.rows([image_id]))
        if not rows:
            raise KeyError(image_id)
        return {**rows[0], "history": store.history(image_id)}

    @app.get("/api/images/{image_id}/thumb", response_class=Response)
    def thumbnail(image_id: ImageId) -> Response:
        """A JPEG thumbnail, at most 160 pixels on a side."""
        path = store.image_path(image_id)
        with thumbnail_slots:
            try:
                pixels = read_thumbnail(path, THUMB_PIXELS)
            except ImageReadError as err:
                raise HTTPException(404, str(err)) from None
        picture = Image.fromarray(pixels)
        picture.thumbnail((THUMB_PIXELS, THUMB_PIXELS), Image.BILINEAR)
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=85)
        return Response(
            buffer.getvalue(),
            media_type="image/jpeg",
            headers={"Cache-Control": "private, max-age=86400"},
        )

    @app.get("/files/{root_id}/{relpath:path}", response_class=FileResponse)
    def file(root_id: Annotated[int, PathParam(ge=0, le=2**62)], relpath: str) -> FileResponse:
        """An original image file from a registered image root."""
        path = store.resolve(root_id, relpath)
        if not path.is_file() or not is_image_file(path):
            raise HTTPException(404, "no such image")
        return FileResponse(path)

    @app.post("/api/labels")
    def set_labels(request: LabelRequest) -> dict:
        """Validate the given images as ``label`` (null clears it), as one undoable change."""
        if len(request.ids) > MAX_IDS_PER_REQUEST:
            raise HTTPException(
                413, f"at most {MAX_IDS_PER_REQUEST} images per request, got {len(request.ids)}"
            )
        changed = store.set_labels(request.ids, request.label, user=user_of(request.user))
        return {"changed": changed}

    @app.post("/api/undo")
    def undo(request: Annotated[UndoRequest, Body()] = UndoRequest()) -> dict:
        """Undo the latest change (by ``user`` when given)."""
        ids = store.undo(user=(request.user or "").strip() or None)
        return {"ids": ids, "items": with_urls(store.rows(ids))}

    @app.post("/api/accept")
    def accept(request: AcceptRequest) -> dict:
        """Validate every prediction of ``label`` (all labels if null) at ≥ ``min_score``."""
        changed = store.accept_predictions(
            label=request.label, min_score=request.min_score, user=user_of(request.user)
        )
        return {"changed": changed}

    @app.post("/api/prelabel", status_code=202)
    def start_prelabel(request: PrelabelRequest) -> dict:
        """Start predicting every image with a model bundle (a folder path on the server)."""
        job.start(store, request.bundle)
        return job.state

    @app.get("/api/prelabel")
    def prelabel_state() -> dict:
        return job.state

    @app.get("/api/disagreements")
    def disagreements() -> list[dict]:
        """Validated images whose latest prediction names another class."""
        return with_urls(store.rows(store.disagreements()))

    @app.get("/api/next")
    def next_images(n: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict]:
        """The most informative unvalidated images (uncertain and diverse) first."""
        return with_urls(store.rows(active.label_next(store, n)))

    @app.get("/api/mislabels")
    def mislabels() -> list[dict]:
        """Validated images whose nearest neighbours mostly carry another label."""
        found = active.possible_mislabels(store)
        rows = with_urls(store.rows([item["id"] for item in found]))
        for row, item in zip(rows, found, strict=True):
            row.update(suggested=item["suggested"], disagreement=item["disagreement"])
        return rows

    @app.get("/api/duplicates")
    def duplicates() -> list[list[dict]]:
        """Groups of near-identical images."""
        return [with_urls(store.rows(group)) for group in active.near_duplicates(store)]

    @app.post("/api/export")
    def export_project(request: ExportRequest) -> dict:
        """Export into a new folder under ``PROJECT_DIR/exports``; returns its path.

        A failed export leaves no half-written folder behind.
        """
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        dest = store.project_dir / "exports" / f"{request.kind}-{stamp}"
        dest.mkdir(parents=True)
        try:
            return export_into(dest, request)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise

    def export_into(dest: Path, request: ExportRequest) -> dict:
        result: dict = {"kind": request.kind, "path": str(dest)}
        if request.kind == "training-set":
            result["counts"] = export.export_training_set(
                store, dest, hard_links=request.hard_links
            )
        elif request.kind == "csv":
            result["rows"] = export.export_labels_csv(store, dest / "labels.csv")
        elif request.kind == "particletrieur":
            result["images"] = export.export_particletrieur(store, dest / "project.xml")
        else:
            name = f"ecotaxa_{store.project_dir.name}.zip"  # what EcoTaxa's import page takes
            result["zip"] = str(export.export_ecotaxa(store, dest / name))
        return result

    return app
