"""Long work of the app (train, classify, abundance) as jobs that outlive the page and the server.

Each job is a folder ``PROJECT_DIR/jobs/<id>/`` holding ``job.json`` (kind, arguments,
state, result) and ``progress.json`` (written by the job as it goes). The work runs in its
own process (``python -m foramflow.label.job_worker``, in a session of its own), so that a
closed tab or a restarted server leaves it running; the server reads the two files to list
jobs. A job whose process is gone while its file still says ``running`` is shown as
``interrupted`` and can be resumed.

The job process owns ``job.json`` while it runs; the server writes it only before the
process starts and after it has ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from foramflow.bundle.schema import ONE_VIEW_BUNDLE, RUN_BUNDLE
from foramflow.errors import ForamflowError

KINDS = ("train", "classify", "abundance")
STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
LIVE = ("queued", "running")
RESUMABLE = ("train", "classify")
JOB_FILE = "job.json"
PROGRESS_FILE = "progress.json"
LOG_FILE = "log.txt"
#: Written into a watching classification's folder to have it finish its last pass and end.
STOP_FILE = "stop"
CLASSIFIER_FILE = "classifier.json"
#: Seconds a new job may take to start its process before it counts as interrupted.
STARTING_S = 60.0
#: Seconds a cancelled job has to stop by itself before it is killed.
CANCEL_GRACE_S = 10.0


class JobError(ForamflowError):
    """A job that cannot be started, cancelled or resumed in its present state."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_json(path: Path, data: dict) -> None:
    """Replace ``path`` whole, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _recent(stamp: str | None, seconds: float = STARTING_S) -> bool:
    """Whether ``stamp`` (ISO 8601) is less than ``seconds`` old: a job still starting."""
    try:
        return (datetime.now(UTC) - datetime.fromisoformat(stamp)).total_seconds() < seconds
    except (TypeError, ValueError):
        return False


def remove_bundles(run_dir: Path) -> None:
    """Remove the bundles of an unfinished training run, whole or half written."""
    for name in (RUN_BUNDLE, ONE_VIEW_BUNDLE):
        shutil.rmtree(run_dir / name, ignore_errors=True)


class Jobs:
    """The jobs of one project: start, list, cancel and resume them."""

    def __init__(self, project_dir: str | Path):
        self.root = Path(project_dir) / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self._children: dict[str, subprocess.Popen] = {}

    # -- reading -------------------------------------------------------------------------

    def folder(self, job_id: str) -> Path:
        """The folder of job ``job_id``; KeyError for anything that is not a job's name."""
        if not (job_id.isalnum() and job_id.isascii()) or not (self.root / job_id).is_dir():
            raise KeyError(f"job {job_id!r}")
        return self.root / job_id

    def get(self, job_id: str) -> dict:
        """The job with its live state and its progress."""
        folder = self.folder(job_id)
        job = read_json(folder / JOB_FILE)
        if not job:
            raise KeyError(f"job {job_id!r}")
        if job.get("state") in LIVE and not self._alive(job_id, job.get("pid")):
            job = read_json(folder / JOB_FILE)  # it may have ended between the two reads
            if job.get("state") == "running" or (
                job.get("state") == "queued" and not _recent(job.get("created"))
            ):
                job["state"] = "interrupted"
        job["progress"] = read_json(folder / PROGRESS_FILE)
        return job

    def list(self) -> list[dict]:
        """Every job, newest first."""
        names = sorted(p.name for p in self.root.iterdir() if (p / JOB_FILE).is_file())
        return [self.get(name) for name in reversed(names)]

    def _alive(self, job_id: str, pid: int | None) -> bool:
        child = self._children.get(job_id)
        if child is not None:
            return child.poll() is None
        if not pid:
            return False
        try:  # a process of another server: alive, not a zombie, and running this job
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return stat.rsplit(")", 1)[-1].split()[0] != "Z" and job_id.encode() in cmdline

    # -- the project's classifier -----------------------------------------------------------

    def classifier(self) -> str | None:
        """The bundle of the latest finished training, the project's classifier."""
        return read_json(self.root / CLASSIFIER_FILE).get("bundle")

    def set_classifier(self, bundle: str | Path) -> None:
        write_json(self.root / CLASSIFIER_FILE, {"bundle": str(bundle), "since": now_iso()})

    # -- changing --------------------------------------------------------------------------

    def start(self, kind: str, args: dict) -> dict:
        """A new job of ``kind`` with ``args``, started in its own process."""
        if kind not in KINDS:
            raise JobError(f"unknown job kind {kind!r}")
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S%f")
        folder = self.root / f"{stamp}{kind}"
        folder.mkdir()
        job = {"id": folder.name, "kind": kind, "args": args, "state": "queued"}
        job.update(created=now_iso(), resume=False, result={}, error="")
        write_json(folder / JOB_FILE, job)
        return self._launch(job)

    def _launch(self, job: dict) -> dict:
        folder = self.root / job["id"]
        with open(folder / LOG_FILE, "ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "foramflow.label.job_worker", str(folder)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a signal to the server's group leaves it running
            )
        self._children[job["id"]] = child
        job.update(pid=child.pid, state="running", started=now_iso())
        write_json(folder / JOB_FILE, job)
        return self.get(job["id"])

    def cancel(self, job_id: str) -> dict:
        """Stop a running job; a training's unfinished bundles are removed."""
        job = self.get(job_id)
        if job["state"] not in (*LIVE, "interrupted"):
            raise JobError(f"job {job_id} is {job['state']}, nothing to cancel")
        if job["state"] in LIVE:
            self._stop(job_id, job["pid"])
        job = read_json(self.folder(job_id) / JOB_FILE)
        if job["state"] in (*LIVE, "interrupted"):  # killed before it could say so
            job.update(state="cancelled", finished=now_iso())
            write_json(self.folder(job_id) / JOB_FILE, job)
        if job["kind"] == "train":
            remove_bundles(self.folder(job_id) / "run")
        return self.get(job_id)

    def _stop(self, job_id: str, pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + CANCEL_GRACE_S
        while self._alive(job_id, pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._alive(job_id, pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        child = self._children.pop(job_id, None)
        if child is not None:
            child.wait()

    def stop_watching(self, job_id: str) -> dict:
        """Ask a classification that watches its folder to end after its last pass."""
        job = self.get(job_id)
        if not (job["kind"] == "classify" and job["args"].get("watch")):
            raise JobError(f"job {job_id} does not watch a folder")
        if job["state"] not in LIVE:
            raise JobError(f"job {job_id} is {job['state']}, it watches nothing")
        (self.folder(job_id) / STOP_FILE).touch()
        return job

    def resume(self, job_id: str) -> dict:
        """Run an interrupted, failed or cancelled job again where it stopped."""
        job = self.get(job_id)
        if job["state"] in (*LIVE, "done"):
            raise JobError(f"job {job_id} is {job['state']}, nothing to resume")
        if job["kind"] not in RESUMABLE:
            raise JobError(f"a {job['kind']} job is not resumed: start a new one")
        job = read_json(self.folder(job_id) / JOB_FILE)
        job.update(resume=True, error="", finished=None)
        (self.folder(job_id) / STOP_FILE).unlink(missing_ok=True)
        return self._launch(job)
