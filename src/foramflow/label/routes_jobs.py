"""The app's pages and routes for long work: train, classify, count, statistics.

Each start creates a job (:mod:`foramflow.label.jobs`) that runs the library step in its
own process; the pages poll ``/api/jobs``. Files are served only by the names a job's
output folder lists, and uploads are read within the app's body cap.
"""

from __future__ import annotations

import functools
import io
import uuid
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import BaseModel, Field

from foramflow.classify.results import PREDICTIONS_FILE
from foramflow.errors import ForamflowError
from foramflow.label.jobs import LIVE, JobError, Jobs, read_json
from foramflow.label.pages import render
from foramflow.label.store import LabelStore, class_name

PAGES = ("train", "classify", "count", "stats")
JobName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9]+$")]
JobId = Annotated[str, PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9]+$")]
PathText = Annotated[str, Field(min_length=1, max_length=4096)]
MODELS = Literal[
    "auto", "base_cyclic", "resnet_cyclic", "efficientnet_lite0_tl", "efficientnet_lite0_top"
]
CURVE_POINTS = 200
#: Tables of an abundance folder that may also be downloaded as Parquet.
TABLE_SUFFIX = ".csv"


class TrainOptions(BaseModel):
    model: MODELS = "auto"
    epochs: int | None = Field(None, ge=1, le=1000)
    input_size: int | None = Field(None, ge=16, le=512)
    batch_size: int | None = Field(None, ge=1, le=1024)
    min_per_class: int | None = Field(None, ge=1, le=100_000)
    seed: int | None = Field(None, ge=0, le=2**31)


class TrainRequest(BaseModel):
    classes: list[Annotated[str, Field(max_length=200)]] = Field(min_length=2, max_length=1000)
    options: TrainOptions = TrainOptions()


class ClassifyRequest(BaseModel):
    images: PathText
    bundle: PathText | None = None
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    sample_regex: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    watch: bool = False


class AbundanceRequest(BaseModel):
    classify_job: JobName
    human: JobName | None = None  # an uploaded human counts file
    title: Annotated[str, Field(max_length=200)] | None = None


class JobRequestError(ForamflowError):
    """A job that cannot be started with the folder, bundle, threshold or upload given."""


def records(table: pd.DataFrame) -> list[dict]:
    """The rows of ``table`` as JSON can carry them: a missing value as null."""
    return table.astype(object).where(table.notna(), None).to_dict("records")


def jobs_router(store: LabelStore) -> APIRouter:
    """The routes, over the jobs of ``store``'s project."""
    jobs = Jobs(store.project_dir)
    uploads = jobs.root / "uploads"
    router = APIRouter()

    def page(name: str) -> str:
        return render("work.html", name)

    for name in PAGES:
        router.add_api_route(
            f"/{name}",
            functools.partial(page, name),
            methods=["GET"],
            response_class=HTMLResponse,
            include_in_schema=False,
        )

    # -- jobs --------------------------------------------------------------------------------

    @router.get("/api/jobs")
    def list_jobs() -> list[dict]:
        return jobs.list()

    @router.get("/api/jobs/{job_id}")
    def get_job(job_id: JobId) -> dict:
        return jobs.get(job_id)

    @router.post("/api/jobs/{job_id}/cancel")
    def cancel_job(job_id: JobId) -> dict:
        return checked(jobs.cancel, job_id)

    @router.post("/api/jobs/{job_id}/resume", status_code=202)
    def resume_job(job_id: JobId) -> dict:
        return checked(jobs.resume, job_id)

    @router.post("/api/jobs/{job_id}/stop")
    def stop_watching(job_id: JobId) -> dict:
        """End a classification that watches its folder, after a last pass."""
        return checked(jobs.stop_watching, job_id)

    def checked(action, *args):
        try:
            return action(*args)
        except JobError as err:
            raise HTTPException(409, str(err)) from None

    # -- train -------------------------------------------------------------------------------

    def labelled_counts() -> dict[str, int]:
        return {c["name"]: c["validated"] for c in store.classes() if c["validated"]}

    def chosen(classes: list[str]) -> dict[str, int]:
        counts = labelled_counts()
        names = [class_name(c) for c in classes]
        missing = [c for c in names if c not in counts]
        if missing:
            raise KeyError(f"no labelled images of class {', '.join(missing)}")
        return {c: counts[c] for c in names}

    def labelled_paths(classes: list[str]) -> list[Path]:
        marks = ",".join("?" * len(classes))
        rows = store.query(f"SELECT id FROM images WHERE label IN ({marks})", classes)
        return list(store.image_paths([row["id"] for row in rows]).values())

    @router.get("/api/train/plan")
    def train_plan(classes: Annotated[list[str], Query(max_length=1000)] = ()) -> dict:
        """The labelled classes, and what ``--model auto`` would do with those chosen, and why."""
        from foramflow.training.auto import carries_colour, choose_recipe

        counts = chosen(list(classes)) if classes else labelled_counts()
        colour = bool(counts) and carries_colour(labelled_paths(list(counts)))
        choice = choose_recipe(list(counts.values()), gpu=has_gpu(), colour=colour)
        return {
            "classes": labelled_counts(),
            "chosen": counts,
            "auto": {
                "model": choice.model,
                "min_per_class": choice.min_per_class,
                "reasons": choice.reasons,
            },
            "classifier": jobs.classifier(),
        }

    @router.post("/api/jobs/train", status_code=202)
    def start_training(request: TrainRequest) -> dict:
        """Train on the project's validated images of the chosen classes."""
        counts = chosen(request.classes)
        if any(job["kind"] == "train" and job["state"] in LIVE for job in jobs.list()):
            raise HTTPException(409, "a training is running: wait for it or cancel it")
        options = request.options.model_dump(exclude_none=True)
        return jobs.start("train", {"classes": sorted(counts), "options": options})

    @router.get("/api/classifier")
    def classifier() -> dict:
        return {"bundle": jobs.classifier()}

    @router.get("/api/calibration-curve")
    def calibration_curve(bundle: Annotated[str | None, Query(max_length=4096)] = None) -> dict:
        """Coverage and accuracy on the bundle's validation images for each unsure threshold."""
        from foramflow.bundle import Bundle
        from foramflow.bundle.engine import apply_temperature
        from foramflow.bundle.validation import read_validation
        from foramflow.evaluate.calibration import coverage_accuracy_curve

        bundle = bundle or jobs.classifier()
        if bundle is None:
            raise KeyError("no classifier in this project yet")
        loaded = Bundle.load(bundle)
        answer = {"bundle": str(bundle), "threshold": loaded.meta.threshold, "points": []}
        validation = read_validation(loaded)
        if validation is not None:
            probs = apply_temperature(validation.probabilities, loaded.temperature)
            curve = coverage_accuracy_curve(probs, validation.labels)
            step = max(1, -(-len(curve) // CURVE_POINTS))
            curve = pd.concat([curve.iloc[::step], curve.iloc[-1:]]).drop_duplicates()
            answer["points"] = curve.to_dict("records")
        return answer

    # -- classify ----------------------------------------------------------------------------

    @router.post("/api/jobs/classify", status_code=202)
    def start_classify(request: ClassifyRequest) -> dict:
        """Classify a folder tree on the server, one sample per first-level folder."""
        images = Path(request.images).expanduser()
        if not images.is_absolute() or not images.is_dir():
            raise JobRequestError(f"{request.images}: not a folder (give its full path)")
        bundle = request.bundle or jobs.classifier()
        if bundle is None:
            raise JobRequestError("no model bundle: train one first, or give its folder")
        from foramflow.bundle import Bundle
        from foramflow.bundle.schema import threshold_problem
        from foramflow.classify.samples import SampleRule

        if request.threshold is not None and (problem := threshold_problem(request.threshold)):
            raise JobRequestError(problem)
        Bundle.load(bundle)  # a BundleError names the file and the problem
        SampleRule(regex=request.sample_regex)  # a SampleError says what is wrong with it
        args = {"images": str(images.resolve()), "bundle": str(bundle)}
        args.update(request.model_dump(include={"threshold", "sample_regex"}, exclude_none=True))
        if request.watch:
            args["watch"] = True
        return jobs.start("classify", args)

    def finished(job_id: str, kind: str) -> dict:
        job = jobs.get(job_id)
        if job["kind"] != kind or job["state"] != "done":
            raise HTTPException(409, f"job {job_id} is not a finished {kind} job")
        return job

    def predictions(job_id: str) -> pd.DataFrame:
        job = finished(job_id, "classify")
        return pd.read_parquet(Path(job["result"]["results"]) / PREDICTIONS_FILE)

    @router.get("/api/jobs/{job_id}/samples")
    def samples(job_id: JobId) -> list[dict]:
        """Images per sample and class of a classification job."""
        table = predictions(job_id)
        counts = table.groupby(["sample", "class"]).size().unstack(fill_value=0)
        return [
            {"sample": str(sample), "images": int(row.sum()), "counts": row.to_dict()}
            for sample, row in counts.iterrows()
        ]

    @router.get("/api/jobs/{job_id}/samples/{sample}")
    def sample_images(
        job_id: JobId,
        sample: Annotated[str, PathParam(max_length=200)],
        offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> dict:
        """One sample's images with their prediction and their label in the project."""
        table = predictions(job_id)
        table = table[table["sample"].astype(str) == sample]
        root = Path(jobs.get(job_id)["args"]["images"])
        root_id = store.add_root(root)
        paths = table["path"].iloc[offset : offset + limit].tolist()
        found = store.query(
            "SELECT id, relpath, label FROM images WHERE root_id = ? AND relpath IN "
            f"({','.join('?' * len(paths))})",
            [root_id, *paths],
        )
        by_path = {row["relpath"]: row for row in found}
        items = []
        shown = table.iloc[offset : offset + limit]
        for path, predicted, score in zip(shown["path"], shown["class"], shown["score"]):
            known = by_path.get(path)
            items.append(
                {
                    "path": path,
                    "predicted": predicted,
                    "score": float(score),
                    "id": known["id"] if known else None,
                    "label": known["label"] if known else None,
                    "thumb": f"/api/images/{known['id']}/thumb" if known else None,
                }
            )
        return {"total": len(table), "offset": offset, "items": items}

    # -- count -------------------------------------------------------------------------------

    @router.post("/api/uploads/human-counts", status_code=201)
    async def upload_human_counts(request: Request) -> dict:
        """Keep a human counts CSV (the request body) after checking it can be read."""
        from foramflow.abundance.compare import read_human_counts

        body = await request.body()
        uploads.mkdir(exist_ok=True)
        upload_id = uuid.uuid4().hex
        path = uploads / f"{upload_id}.csv"
        path.write_bytes(body)
        try:
            counts, _positions = read_human_counts(path)
        except (ForamflowError, UnicodeDecodeError) as err:
            path.unlink()
            message = str(err).replace(str(path), "the uploaded human counts CSV")
            raise JobRequestError(message) from None
        return {"id": upload_id, "samples": counts.index.tolist(), "taxa": list(counts.columns)}

    @router.post("/api/jobs/abundance", status_code=202)
    def start_abundance(request: AbundanceRequest) -> dict:
        """Abundances of a finished classification, beside uploaded human counts."""
        job = finished(request.classify_job, "classify")
        title = request.title or Path(job["args"]["images"]).name
        args = {"results": job["result"]["results"], "title": title}
        if request.human:
            human = uploads / f"{request.human}.csv"
            if not human.is_file():
                raise KeyError(f"upload {request.human}")
            args["human"] = str(human)
        return jobs.start("abundance", args)

    @router.get("/api/jobs/{job_id}/drift")
    def drift(job_id: JobId) -> list[dict]:
        """Per sample of a count: how far its top probabilities drift from the bundle's."""
        path = Path(finished(job_id, "abundance")["result"]["out"]) / "drift.csv"
        return pd.read_csv(path).to_dict("records") if path.is_file() else []

    @router.get("/api/jobs/{job_id}/downcore")
    def downcore(job_id: JobId) -> dict:
        """The points of the down-core figure: each method's relative abundance per sample
        and taxon with its interval, the human counts' beside them, and each sample's depth
        (its rank where the samples have none)."""
        job = finished(job_id, "abundance")
        out = Path(job["result"]["out"])
        table = pd.read_csv(out / "abundance.csv", dtype={"sample": str})
        depth = next((c for c in table.columns if c.startswith("depth")), None)
        order = list(dict.fromkeys(table["sample"]))
        if depth is None or table[depth].isna().any():
            depth = None
            table["position"] = table["sample"].map({s: i + 1 for i, s in enumerate(order)})
        else:
            table["position"] = table[depth]
        at = dict(zip(table["sample"], table["position"], strict=False))
        columns = ["method", "sample", "taxon", "fraction", "low", "high", "position"]
        human = []
        if (out / "human_abundance.csv").is_file():
            counts = pd.read_csv(out / "human_abundance.csv", dtype={"sample": str})
            counts = counts[counts["sample"].isin(at)].assign(method="human")
            counts["position"] = counts["sample"].map(at)
            human = records(counts[columns])
        return {
            "classify_job": Path(job["args"]["results"]).parent.name,
            "axis": depth or "sample",
            "points": records(table[columns]) + human,
        }

    def output_folder(job: dict) -> Path:
        if job["state"] != "done":
            raise HTTPException(409, f"job {job['id']} is {job['state']}")
        key = {"abundance": "out", "classify": "results", "train": "report"}[job["kind"]]
        folder = Path(job["result"][key])
        return folder.parent if job["kind"] == "train" else folder

    @router.get("/api/jobs/{job_id}/files")
    def files(job_id: JobId) -> list[str]:
        """The files of a finished job's output folder that may be downloaded."""
        folder = output_folder(jobs.get(job_id))
        return sorted(p.name for p in folder.iterdir() if p.is_file() and not p.is_symlink())

    @router.get("/api/jobs/{job_id}/files/{name}")
    def download(job_id: JobId, name: str, format: Literal["file", "parquet"] = "file") -> Response:
        """One listed file; a CSV table also as Parquet."""
        if name not in files(job_id):
            raise HTTPException(404, f"no file {name!r} in job {job_id}")
        path = output_folder(jobs.get(job_id)) / name
        if format == "parquet":
            if not name.endswith(TABLE_SUFFIX):
                raise HTTPException(400, f"{name} is not a table")
            buffer = io.BytesIO()
            pd.read_csv(path).to_parquet(buffer, index=False)
            stem = name.removesuffix(TABLE_SUFFIX)
            return Response(
                buffer.getvalue(),
                media_type="application/vnd.apache.parquet",
                headers={"Content-Disposition": f'attachment; filename="{stem}.parquet"'},
            )
        attach = name.endswith((".csv", ".parquet", ".svg", ".png"))
        return FileResponse(path, filename=name if attach else None)

    # -- statistics --------------------------------------------------------------------------

    @router.get("/api/stats")
    def stats() -> dict:
        """Class counts, labelling progress, and the evaluation of the project's classifier."""
        result = {
            "classes": [
                {k: c[k] for k in ("name", "validated", "predicted", "below_target")}
                for c in store.classes()
            ],
            "statuses": store.status_counts(),
            "classifier": jobs.classifier(),
            "confusion": None,
            "per_class": None,
        }
        bundle = jobs.classifier()
        evaluation = Path(bundle).parent / "evaluation" if bundle else None
        if evaluation and (evaluation / "confusion_matrix.csv").is_file():
            confusion = pd.read_csv(evaluation / "confusion_matrix.csv", index_col=0)
            result["confusion"] = {
                "labels": [str(c) for c in confusion.columns],
                "rows": [str(r) for r in confusion.index],
                "counts": confusion.to_numpy().tolist(),
            }
            metrics = read_json(Path(bundle).parent / "metrics.json").get("per_class", {})
            result["per_class"] = {
                name: {k: values.get(k) for k in ("precision", "recall", "support")}
                for name, values in metrics.items()
            }
        return result

    return router


@functools.cache
def has_gpu() -> bool:
    """Whether training here would use a GPU, as ``--device auto`` decides."""
    from foramflow.training.device import resolve_device

    return resolve_device("auto").type == "cuda"
