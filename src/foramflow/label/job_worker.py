"""The process of one app job: ``python -m foramflow.label.job_worker JOB_FOLDER``.

It reads the job's ``job.json``, runs the library step its kind names (the same step as
the command line), reports progress into ``progress.json`` through :class:`JobProgress`,
and writes the outcome back. SIGTERM (cancel) stops the step; a cancelled training keeps
its checkpoint, for a resume, and loses its unfinished bundles. A classification that
watches its folder classifies it again whenever its images change, until asked to stop.
"""

from __future__ import annotations

import re
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

from foramflow.label.jobs import (
    JOB_FILE,
    PROGRESS_FILE,
    STOP_FILE,
    Jobs,
    now_iso,
    read_json,
    remove_bundles,
    write_json,
)
from foramflow.label.store import LabelStore

MESSAGES_KEPT = 30
WRITE_EVERY_S = 0.5
#: Seconds between two looks at a watched folder; a change must hold for one look.
WATCH_EVERY_S = 2.0
#: The classification step's task, whose count is told per sample.
CLASSIFYING = "classifying"
EPOCH = re.compile(r"(\d+)/≤?(\d+)$")


class Cancelled(BaseException):
    """SIGTERM arrived: the user cancelled the job."""


class JobProgress:
    """A :class:`~foramflow.progress.Progress` that keeps the state of the job's work in a
    JSON file the app polls: the current task, its counts and fields, the epoch, time left
    and the last messages."""

    def __init__(self, path: Path):
        self.path = path
        self.state: dict = {"messages": [], "task": None, "updated": now_iso()}
        self.last_write = 0.0
        self.first_epoch_started: float | None = None
        self.first_epoch: int | None = None
        self.sample_order: list[str] | None = None
        self.flush()

    def count_per_sample(self, samples: list[str]) -> None:
        """Tell the classification's progress per sample: ``samples`` is the sample of each
        image in the order the step classifies them (the input list's)."""
        self.sample_order = samples

    def message(self, text: str, *, warning: bool = False) -> None:
        self.state["messages"] = [*self.state["messages"], text][-MESSAGES_KEPT:]
        self.flush()

    def task(self, description: str, total: int | None, **fields: str) -> _JobTask:
        return _JobTask(self, description, total, fields)

    def flush(self, *, force: bool = True) -> None:
        if force or time.monotonic() - self.last_write >= WRITE_EVERY_S:
            self.state["updated"] = now_iso()
            task = self.state["task"]
            if self.sample_order is not None and task and task["description"] == CLASSIFYING:
                self.state["samples"] = per_sample(self.sample_order, task["completed"])
            write_json(self.path, self.state)
            self.last_write = time.monotonic()

    def epoch_started(self, epoch: int, last: int) -> None:
        """Note an epoch's start; the time left is the mean epoch's times those to come."""
        if self.first_epoch is None:
            self.first_epoch, self.first_epoch_started = epoch, time.monotonic()
        elapsed = time.monotonic() - self.first_epoch_started
        done = epoch - self.first_epoch
        left = elapsed / done * (last - epoch + 1) if done else None
        self.state.update(epoch=epoch, epochs=last, seconds_left=left)


class _JobTask:
    def __init__(self, progress: JobProgress, description: str, total, fields: dict):
        self.progress, self.started = progress, time.monotonic()
        self.state = {"description": description, "total": total, "completed": 0, **fields}
        if match := EPOCH.search(description):
            progress.epoch_started(int(match[1]), int(match[2]))
        progress.state["task"] = self.state
        progress.flush()

    def advance(self, n: int = 1, **fields: str) -> None:
        self.update(completed=self.state["completed"] + n, **fields)

    def update(self, *, total=None, completed=None, **fields: str) -> None:
        if total is not None:
            self.state["total"] = total
        if completed is not None:
            self.state["completed"] = completed
        self.state.update(fields)
        if "acc" in fields:
            self.progress.state["accuracy"] = fields["acc"]
        done, total = self.state["completed"], self.state["total"]
        if "epoch" not in self.progress.state and done and total:
            elapsed = time.monotonic() - self.started
            self.progress.state["seconds_left"] = elapsed / done * (total - done)
        self.progress.flush(force=False)

    def done(self) -> None:
        self.progress.flush()


def per_sample(order: list[str], done: int) -> list[dict]:
    """Images done and in all per sample, when the first ``done`` of ``order`` are done."""
    counts: dict[str, list[int]] = {}
    for index, sample in enumerate(order):
        count = counts.setdefault(sample, [0, 0])
        count[0] += index < done
        count[1] += 1
    return [{"sample": s, "done": d, "total": t} for s, (d, t) in counts.items()]


def run_train(store: LabelStore, folder: Path, args: dict, resume: bool, progress) -> dict:
    """Train on the project's validated images of the chosen classes."""
    from foramflow.label.export import export_training_set
    from foramflow.training.run_folder import LAST_CHECKPOINT
    from foramflow.training.step import train

    data, run = folder / "data", folder / "run"
    if resume and not (run / LAST_CHECKPOINT).is_file():
        resume = False  # stopped before its first checkpoint: start again
        shutil.rmtree(run, ignore_errors=True)
    if not resume:
        shutil.rmtree(data, ignore_errors=True)
        progress.message("copying the labelled images of the chosen classes")
        export_training_set(store, data)
        (data / "labels.csv").unlink(missing_ok=True)
        for path in data.iterdir():
            if path.name not in args["classes"]:
                shutil.rmtree(path)
    try:
        result = train(data, run, resume=resume, progress=progress, **args["options"])
    except BaseException:
        remove_bundles(run)
        raise
    Jobs(store.project_dir).set_classifier(result.bundle)
    return {
        "bundle": str(result.bundle),
        "report": str(result.report),
        "metrics": {k: v for k, v in result.metrics.items() if isinstance(v, int | float)},
        "classes": result.classes,
    }


def run_classify(store: LabelStore, folder: Path, args: dict, progress) -> dict:
    """Classify a folder tree (sample: first folder) and keep the predictions in the store;
    a watched folder again each time its images change, until the job is asked to stop."""
    if not args.get("watch"):
        return classify_once(store, folder, args, progress)
    images, stop = Path(args["images"]), folder / STOP_FILE
    classified = images_listing(images)
    result = classify_once(store, folder, args, progress, overwrite=True)
    seen = classified
    while True:
        if seen is classified:  # just classified: say so once
            progress.message(f"watching {images}: {result['images']} images classified")
        stopping = stop.is_file()
        if not stopping:
            time.sleep(WATCH_EVERY_S)
        now = images_listing(images)
        if now != classified and (now == seen or stopping):  # no file still being written
            result = classify_once(store, folder, args, progress, overwrite=True)
            classified = now
        seen = now
        if stopping:
            return result


def images_listing(images: Path) -> list[tuple[str, int, int]]:
    """Path, size and modification time of every image under ``images``: what a change is
    (other files, such as an imaging system's logs, change nothing)."""
    from foramflow.io.images import is_image_file

    listing = []
    for path in sorted(images.rglob("*")):
        if path.is_file() and is_image_file(path):
            stat = path.stat()
            listing.append((str(path), stat.st_size, stat.st_mtime_ns))
    return listing


def classify_once(
    store: LabelStore, folder: Path, args: dict, progress, *, overwrite: bool = False
) -> dict:
    """One run of the classify step over the folder, into the job's results folder."""
    import numpy as np
    import pandas as pd

    from foramflow.classify.runner import build_manifest, classify_folder
    from foramflow.classify.samples import SampleRule

    images = Path(args["images"])
    added, problems = store.add_images(images)
    progress.message(f"{added} new images registered in the project")
    for problem in problems[:10]:
        progress.message(problem, warning=True)
    rule = SampleRule(regex=args.get("sample_regex"))
    progress.count_per_sample(build_manifest(images, rule)[0]["sample"].astype(str).tolist())
    result = classify_folder(
        args["bundle"], images, folder / "results", threshold=args.get("threshold"),
        samples=rule, progress=progress, overwrite=overwrite,
    )  # fmt: skip
    table = pd.read_parquet(result.predictions_path)
    ids = image_ids(store, images)
    model = Path(args["bundle"]).name
    probs = np.sort(table.filter(like="prob_").to_numpy(), axis=1)
    margins = probs[:, -1] - probs[:, -2] if probs.shape[1] > 1 else probs[:, -1]
    columns = zip(table["path"], table["class"], table["score"], margins, table["status"])
    store.set_predictions(
        [
            (ids[path], label, float(score), float(margin))
            for path, label, score, margin, status in columns
            if path in ids and status not in ("error", "unsure")
        ],
        model=model,
    )
    return {"results": str(result.out_dir), "images": len(table)}


def image_ids(store: LabelStore, images: Path) -> dict[str, int]:
    """The store's ids of the images under ``images``, by path relative to it."""
    root_id = store.add_root(images)
    rows = store.query("SELECT id, relpath FROM images WHERE root_id = ?", (root_id,))
    return {row["relpath"]: row["id"] for row in rows}


def run_abundance(folder: Path, args: dict, progress) -> dict:
    """Abundances of a classification job's results, with the human counts given."""
    from foramflow.abundance.plots import plot_downcore, save_figure
    from foramflow.abundance.steps import estimate_abundance

    out = folder / "abundance"
    result = estimate_abundance(
        args["results"], out, human=args.get("human"), title=args.get("title"),
        progress=progress,
    )  # fmt: skip
    save_figure(plot_downcore(result.analysis, title=args.get("title")), out / "downcore.svg")
    return {"out": str(out), "report": str(result.report), "figure": str(result.figure)}


def run(folder: Path) -> int:
    job = read_json(folder / JOB_FILE)
    store = LabelStore(folder.parent.parent)
    progress = JobProgress(folder / PROGRESS_FILE)

    def cancelled(_signum, _frame):
        raise Cancelled()

    signal.signal(signal.SIGTERM, cancelled)
    try:
        if job["kind"] == "train":
            result = run_train(store, folder, job["args"], job.get("resume", False), progress)
        elif job["kind"] == "classify":
            result = run_classify(store, folder, job["args"], progress)
        else:
            result = run_abundance(folder, job["args"], progress)
        job.update(state="done", result=result)
    except Cancelled:
        job.update(state="cancelled")
    except Exception as err:  # kept for the page, with its traceback in log.txt
        traceback.print_exc()
        job.update(state="failed", error=str(err) or type(err).__name__)
    job["finished"] = now_iso()
    write_json(folder / JOB_FILE, job)
    return 0 if job["state"] == "done" else 1


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
