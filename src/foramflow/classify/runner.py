"""Classify every image under a folder of per-sample folders: predictions and counts (method §7).

:func:`classify_folder` is the whole run: find the images and their samples, check the
results folder for an earlier run of the same job (resume) or of another one (refuse), classify
the chunks still missing on this machine or on a Dask cluster, then merge the chunks and count.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc

from foramflow.bundle.decisions import ERROR, UNSURE, DecisionRule
from foramflow.bundle.decode import decode_batch
from foramflow.bundle.engine import (
    Engine,
    auto_takes_int8,
    available_cores,
    cascade_problem,
    resolve_precision,
)
from foramflow.bundle.folder import Bundle
from foramflow.bundle.precision import ensure_precision
from foramflow.bundle.quantize import spread
from foramflow.bundle.records import PrecisionRecords
from foramflow.bundle.tuning import Setup, cached_setup, choose_setup
from foramflow.classify.local import run_local
from foramflow.classify.results import ABUNDANCE_FILE, COUNTS_FILE, PREDICTIONS_FILE, RunRecord
from foramflow.classify.samples import SampleRule, assign_samples, find_images
from foramflow.classify.store import (
    RunStore,
    describe_changes,
    manifest_hash,
    run_fingerprint,
)
from foramflow.classify.tables import CountTable, prediction_schema, relative_abundance
from foramflow.errors import ForamflowError, InputNotFound, InvalidInput
from foramflow.io.files import prepare_output_dir
from foramflow.progress import Progress, Quiet
from foramflow.version import __version__

DEFAULT_CHUNK_SIZE = 1024
DEFAULT_BATCH_SIZE = 64
#: Images decoded to time the candidate settings on.
TIMING_IMAGES = 64


class RunMismatchError(ForamflowError, RuntimeError):
    """The results folder holds a run of another job (bundle, inputs or settings differ)."""


@dataclass
class ClassifyResult:
    """What a run produced: the results folder, its run record, counts and failed images."""

    out_dir: Path
    run: RunRecord
    counts: pd.DataFrame
    errors: pd.DataFrame  # path, error
    n_resumed: int

    @property
    def predictions_path(self) -> Path:
        return self.out_dir / PREDICTIONS_FILE


def classify_folder(
    bundle: str | Path,
    images: str | Path,
    out: str | Path,
    *,
    threshold: float | None = None,
    samples: SampleRule = SampleRule(),
    precision: str = "auto",
    workers: int | None = None,
    threads: int | None = None,
    batch_size: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    scheduler=None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> ClassifyResult:
    """Classify all images under the folder ``images`` with the bundle ``bundle``; write the
    results folder ``out``.

    Parameters
    ----------
    threshold
        The top probability must exceed it, else the image is "unsure"; in (0.5, 1.0], or 0
        to switch the rule off. Default: the bundle's. Per-class thresholds in the bundle
        override it for images predicted as that class.
    samples
        How the sample (and depth) of an image is decided; default its first folder.
    precision
        "fp32"; "bf16" (OpenVINO); "int8" (quantises the bundle's network first if it has
        no int8 copy, calibrated on images from ``images``); "cascade" (each image read
        once, and in every turn only where that view is unsure: the bundle's
        :class:`~foramflow.bundle.schema.CascadeCheck`, chosen at training to keep the
        validation top-1); or "auto": the fastest here of fp32 and of what the checks
        allow: the cascade, and bf16 (on a CPU that computes it natively) or else int8, each
        only when its top-1 agreement with fp32 is at least 99.5 % on at least 200 images,
        for this very network (bf16's, close calls recomputed in fp32, is measured on images
        from ``images`` the first time). An int8 copy that is not the file that was checked
        is made again.
    workers
        Decoding processes on this machine (default: one per core; 0 decodes in-process).
    threads, batch_size
        The network's threads and images per batch. Left out, they are measured on this
        machine (with the precision, when "auto" leaves a choice) the first time this
        network runs here, and the fastest kept for later runs
        (:mod:`foramflow.bundle.tuning`); run.json records the choice and its timings.
    scheduler
        A Dask scheduler address (``tcp://host:port``), cluster object or Client: run the
        chunks on that cluster instead of this machine.
    overwrite
        Discard an earlier run in ``out`` instead of refusing when it differs.
    progress
        Receives the messages (warnings start ``warning:``) and one task, "classifying", whose
        total is the number of images and whose count starts at those an earlier run did.

    Notes
    -----
    A run that stops for any reason continues where it stopped when started again with the
    same arguments.
    """
    if (batch_size is not None and batch_size < 1) or chunk_size < 1:
        raise InvalidInput("batch size and chunk size must be at least 1")
    if threads is not None and threads < 1:
        raise InvalidInput("threads must be at least 1")
    started = time.perf_counter()
    progress = progress or Quiet()
    log = _messages_to(progress)
    bundle = _open_bundle(bundle, log)
    rule = _decision_rule(bundle, threshold)
    images_dir = Path(images).resolve()
    manifest, skipped = build_manifest(images_dir, samples)
    for path, reason in skipped:
        log(f"skipped {path}: {reason}")
    store = RunStore(prepare_output_dir(out), depth_unit=samples.depth_unit())
    earlier = None if overwrite else store.read_run()
    precision = _choose_precision(bundle, precision, earlier, images_dir, manifest, store, log)
    setup = _choose_setup(
        bundle, precision, threads, batch_size, scheduler, images_dir, manifest, log
    )
    job = _describe_job(bundle, setup.precision, rule, images_dir, manifest, samples)
    if earlier is not None:
        _check_same_job(earlier, job, store, manifest)
        chunk_size = int(earlier.chunk_size)
    elif overwrite:
        store.clear()
    if _is_complete(earlier, store):
        log(f"{store.root} already holds the complete results of this run")
        return _result_from_predictions(store, earlier, bundle.labels)

    # Opened before anything is written, so that a network that cannot run is refused first.
    engine = None
    if scheduler is None:
        engine = Engine(
            bundle, precision=job["precision"], threads=setup.threads, cuts=rule.per_class
        )
    backend = _Backend(bundle, job, engine, rule, images_dir, workers, setup.batch_size, scheduler)
    run = _start_run(store, job, earlier, chunk_size, manifest, skipped, setup)
    n_resumed = _classify_chunks(store, run, manifest, backend, log, progress)
    return _finish_run(store, run, manifest, bundle.labels, n_resumed, started)


def _messages_to(progress: Progress) -> Callable[[str], None]:
    """The run's messages as the progress object's, those starting ``warning:`` as warnings."""
    return lambda text: progress.message(text, warning=text.startswith("warning:"))


def _open_bundle(bundle_path: str | Path, log) -> Bundle:
    """The bundle, its notes said and its network opened once and checked against model.json
    before any work (that engine is not kept)."""
    bundle = Bundle.load(bundle_path)
    for note in bundle.notes:
        log(f"note: {bundle.path}: {note}")
    Engine(bundle, precision="fp32", threads=1)
    return bundle


def _decision_rule(bundle: Bundle, threshold: float | None) -> DecisionRule:
    """The bundle's thresholds, the global one replaced by ``threshold`` when given."""
    return DecisionRule(
        tuple(bundle.labels),
        bundle.threshold if threshold is None else threshold,
        bundle.class_thresholds,
    )


def _choose_precision(
    bundle: Bundle,
    precision: str,
    earlier: RunRecord | None,
    images_dir: Path,
    manifest: pd.DataFrame,
    store: RunStore,
    log,
) -> str:
    """The precision asked for: "auto" resumes with an earlier run's choice; a reduced
    precision is checked first (see :func:`foramflow.bundle.precision.ensure_precision`)."""
    records = PrecisionRecords(bundle, store.root)
    records.attach()
    if precision == "auto" and earlier is not None and earlier.precision is not None:
        precision = earlier.precision
    paths = [images_dir / p for p in manifest.loc[manifest["problem"] == "", "path"]]
    return ensure_precision(bundle, precision, paths, log, records)


def _choose_setup(
    bundle: Bundle,
    precision: str,
    threads: int | None,
    batch_size: int | None,
    scheduler,
    images_dir: Path,
    manifest: pd.DataFrame,
    log,
) -> Setup:
    """Precision, threads and batch size: as given, else measured on a batch of the run's
    own images (or kept from an earlier measurement on this machine). "auto" may take a
    reduced precision its checks allow, or the bundle's cascade, only where it is also faster
    here than fp32."""
    resolved = resolve_precision(bundle, precision)[0]
    candidates = [resolved]
    if precision == "auto":
        candidates += [
            *(["int8"] if auto_takes_int8(bundle) else []),
            *(["cascade"] if cascade_problem(bundle) is None else []),
            "fp32",
        ]
    if scheduler is not None:  # the cluster's workers run one thread each
        return Setup(resolved, 1, batch_size or DEFAULT_BATCH_SIZE, source="given")
    kept = cached_setup(bundle, candidates, threads=threads, batch_size=batch_size)
    if kept is not None:
        return kept
    # spread over the folder: the cascade's speed depends on how many images it is unsure
    # of, which differs from one sample or class folder to the next
    readable = list(manifest.loc[manifest["problem"] == "", "path"])
    paths = [images_dir / p for p in spread(readable, TIMING_IMAGES)]
    batch, _ = decode_batch(paths, bundle.spec)
    if len(batch) == 0:  # nothing readable: the run reports every image as an error
        return Setup(
            resolved, threads or available_cores(), batch_size or DEFAULT_BATCH_SIZE, "given"
        )
    return choose_setup(bundle, candidates, batch, threads=threads, batch_size=batch_size, log=log)


def _describe_job(
    bundle: Bundle,
    precision: str,
    rule: DecisionRule,
    images_dir: Path,
    manifest: pd.DataFrame,
    samples: SampleRule,
) -> dict:
    """What decides the results of a run: a run with another job cannot be resumed."""
    used_precision, model_file = resolve_precision(bundle, precision)
    return {
        "bundle": str(bundle.path.resolve()),
        "bundle_hash": bundle.network(model_file).hash,
        "model_file": model_file,
        "precision": used_precision,
        "images_dir": str(images_dir),
        "input_hash": manifest_hash(manifest),
        "n_images": len(manifest),
        "samples": samples.describe(),
        "depth_unit": samples.depth_unit(),
        **rule.to_dict(),
    }


def _is_complete(earlier: RunRecord | None, store: RunStore) -> bool:
    return (
        earlier is not None
        and earlier.state == "complete"
        and store.path(PREDICTIONS_FILE).is_file()
    )


def _start_run(
    store: RunStore,
    job: dict,
    earlier: RunRecord | None,
    chunk_size: int,
    manifest: pd.DataFrame,
    skipped: list[tuple[str, str]],
    setup: Setup,
) -> RunRecord:
    """Write the run record (and, for a new run, the input list); return the record."""
    store.prepare()
    if earlier is None:
        store.write_manifest(manifest)
    run = RunRecord.model_validate(
        {
            **job,
            "chunk_size": chunk_size,
            "fingerprint": run_fingerprint(job, chunk_size),
            "skipped": [{"path": path, "reason": reason} for path, reason in skipped],
            "state": "running",
            "setup": setup.to_dict(),
            "started": (earlier.started if earlier is not None else None) or _now(),
            "foramflow": __version__,
        }
    )
    store.write_run(run)
    return run


def _classify_chunks(
    store: RunStore,
    run: RunRecord,
    manifest: pd.DataFrame,
    backend: _Backend,
    log,
    progress: Progress,
) -> int:
    """Classify and write the chunks an earlier run did not finish; return the number of
    images it had classified."""
    chunk_size, fingerprint = run.chunk_size, run.fingerprint
    n_chunks = math.ceil(len(manifest) / chunk_size)
    done, n_foreign = store.finished_chunks(fingerprint)
    done &= set(range(n_chunks))
    if n_foreign:
        log(
            f"discarded {n_foreign} chunk(s) in {store.chunks_dir} that this run did not "
            "write (another bundle, threshold or input list); their images are classified again"
        )
    n_resumed = sum(len(_chunk_rows(manifest, i, chunk_size)) for i in done)
    if done:
        log(f"resuming: {n_resumed} of {len(manifest)} images were classified by an earlier run")
    task = progress.task("classifying", len(manifest))
    task.update(completed=n_resumed)
    todo = ((i, _chunk_rows(manifest, i, chunk_size)) for i in range(n_chunks) if i not in done)
    for index, table in backend.run(todo, task.advance, log):
        store.write_chunk(index, table, fingerprint)
    task.done()
    return n_resumed


def _finish_run(
    store: RunStore,
    run: RunRecord,
    manifest: pd.DataFrame,
    labels: list[str],
    n_resumed: int,
    started: float,
) -> ClassifyResult:
    """Merge the chunks, count, and mark the run complete."""
    n_chunks = math.ceil(len(manifest) / run.chunk_size)
    counts, errors, n_unsure = _merge(store, n_chunks, labels, len(manifest), run.fingerprint)
    run = run.with_fields(
        state="complete",
        finished=_now(),
        n_errors=len(errors),
        n_unsure=n_unsure,
        n_resumed=n_resumed,
        seconds=round(time.perf_counter() - started, 1),
    )
    store.write_run(run)
    return ClassifyResult(store.root, run, counts, errors, n_resumed)


def build_manifest(
    images_dir: Path, samples: SampleRule
) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """The input list (path, sample, depth, size, mtime_ns, problem; sorted by path) and the
    entries that could not be searched, with the reason."""
    skipped: list[tuple[str, str]] = []
    files = find_images(images_dir, on_skip=lambda path, reason: skipped.append((path, reason)))
    if files.empty:
        unread = "".join(f"; skipped {path}: {reason}" for path, reason in skipped[:3])
        raise InputNotFound(f"{images_dir}: no images found (looked for {_suffixes()}){unread}")
    sample, depth = assign_samples(files["path"].tolist(), samples, root_name=images_dir.name)
    files.insert(1, "sample", sample)
    files.insert(2, "depth", pd.Series(depth, dtype="float64"))
    return files, skipped


def _suffixes() -> str:
    from foramflow.io.images import IMAGE_SUFFIXES

    return ", ".join(sorted(IMAGE_SUFFIXES))


def _check_same_job(earlier: RunRecord, job: dict, store: RunStore, manifest: pd.DataFrame) -> None:
    reasons = []
    if earlier.bundle_hash != job["bundle_hash"]:
        reasons.append(
            f"the model differs (bundle {earlier.bundle}, {earlier.precision}, "
            f"hash {str(earlier.bundle_hash)[:12]} then; {job['bundle']}, "
            f"{job['precision']}, hash {job['bundle_hash'][:12]} now)"
        )
    if earlier.input_hash != job["input_hash"]:
        old = store.read_manifest()
        changes = describe_changes(old, manifest) if old is not None else "no input list stored"
        reasons.append(f"the input images differ: {changes}")
    for key in ("threshold", "class_thresholds", "depth_unit"):
        if getattr(earlier, key) != job[key]:
            reasons.append(f"{key} was {getattr(earlier, key)}, now {job[key]}")
    if reasons:
        raise RunMismatchError(
            f"{store.root} holds another run: {'; '.join(reasons)}. Choose another --out, "
            "or --overwrite to discard it."
        )


@dataclass
class _Backend:
    """Where the chunks are classified: here (with ``engine``) or on a Dask cluster."""

    bundle: Bundle
    job: dict
    engine: Engine | None
    rule: DecisionRule
    images_dir: Path
    workers: int | None
    batch_size: int
    scheduler: object

    def run(self, todo, on_images, log=lambda message: None) -> Iterator:
        """(chunk index, predictions) for each chunk in ``todo``."""
        if self.scheduler is None:
            yield from run_local(
                todo,
                images_dir=self.images_dir,
                engine=self.engine,
                rule=self.rule,
                workers=available_cores() if self.workers is None else self.workers,
                batch_size=self.batch_size,
                on_images=on_images,
                log=log,
            )
            return
        from foramflow.classify.dask_backend import connect, run_dask

        with connect(self.scheduler) as client:
            yield from run_dask(
                todo,
                client=client,
                bundle_path=self.bundle.path.resolve(),
                bundle_hash=self.job["bundle_hash"],
                precision_records=self.bundle.meta.precision_records(),
                precision=self.job["precision"],
                images_dir=self.images_dir,
                rule=self.rule,
                batch_size=self.batch_size,
                on_images=on_images,
            )


def _chunk_rows(manifest: pd.DataFrame, index: int, chunk_size: int) -> pd.DataFrame:
    rows = manifest.iloc[index * chunk_size : (index + 1) * chunk_size]
    return rows[["path", "sample", "depth", "problem"]].reset_index(drop=True)


def _merge(store: RunStore, n_chunks: int, labels: list[str], n_images: int, fingerprint: str):
    """Merge chunks into predictions.parquet, write the count tables, remove the chunks."""
    counts, error_parts, n_rows, n_unsure = CountTable(labels), [], 0, 0
    for table in store.merge_chunks(n_chunks, prediction_schema(labels), fingerprint):
        counts.add(table)
        n_rows += table.num_rows
        n_unsure += pc.sum(pc.equal(table["status"], UNSURE)).as_py() or 0
        failed = table.filter(pc.equal(table["status"], ERROR)).select(["path", "error"])
        error_parts.append(failed.to_pandas())
    if n_rows != n_images:
        raise RuntimeError(f"merged {n_rows} predictions for {n_images} images; chunks are corrupt")
    table = counts.counts()
    store.write_csv(COUNTS_FILE, _with_depth(table))
    store.write_csv(ABUNDANCE_FILE, _with_depth(relative_abundance(table, labels)))
    store.remove_chunks()
    return table, pd.concat(error_parts, ignore_index=True), n_unsure


def _with_depth(table: pd.DataFrame) -> pd.DataFrame:
    """The table with a depth column first, unknown where no sample has a depth, so that the
    files keep their columns whatever is known."""
    if "depth" in table.columns:
        return table
    return table.assign(depth=float("nan"))[["depth", *table.columns]]


def _result_from_predictions(store: RunStore, run: RunRecord, labels: list[str]) -> ClassifyResult:
    table = store.read_predictions(["path", "sample", "depth", "class", "status", "error"])
    counts = CountTable(labels)
    counts.add(table)
    errors = table.filter(pc.equal(table["status"], ERROR)).select(["path", "error"]).to_pandas()
    return ClassifyResult(store.root, run, counts.counts(), errors, run.n_images or 0)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
