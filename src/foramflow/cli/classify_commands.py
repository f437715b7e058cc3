"""``foramflow classify``: a bundle and folders of sample images → predictions and counts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

import foramflow.cli.options as options
from foramflow.cli.console import console, progress_bar

BundleArg = Annotated[
    Path, typer.Argument(help="Model bundle folder (model.onnx + model.json).", exists=True)
]
ImagesArg = Annotated[
    Path,
    typer.Argument(
        help="Folder of images, searched recursively; by default one subfolder per sample.",
        exists=True,
        file_okay=False,
    ),
]
OutOption = Annotated[
    Path,
    typer.Option("--out", "-o", help="Results folder (created; resumable)."),
]
ThresholdOption = Annotated[
    float | None,
    typer.Option(
        help="The top probability must exceed this, else 'unsure'. In (0.5, 1.0], or 0 to "
        "switch the rule off. Default: the bundle's (0.8 unless set at training).",
        callback=options.Threshold().check,
    ),
]
SampleRegexOption = Annotated[
    str | None,
    typer.Option(
        "--sample-regex",
        help="Regex searched in each image path relative to IMAGES_DIR: group 'sample' (or "
        "the first group) is the sample, an optional group 'depth' the depth.",
        callback=options.Regex().check,
    ),
]
SamplesOption = Annotated[
    Path | None,
    typer.Option(
        "--samples",
        help="CSV with columns sample, optional depth, and path (image) or folder (relative "
        "to IMAGES_DIR); with neither, it adds depths to the sample folders.",
        exists=True,
        dir_okay=False,
    ),
]
PrecisionOption = Annotated[
    Literal["auto", "fp32", "bf16", "int8", "cascade"],
    typer.Option(
        help="auto (the fastest on this machine, timed once, of fp32 and what the bundle's "
        "accuracy checks allow: its int8 copy where training found its validation top-1 "
        "within 0.3 points of fp32's, bf16 agreeing with fp32 on ≥ 99.5 % of check images, "
        "and the cascade); fp32; bf16 (OpenVINO); int8 (the bundle's copy, or one calibrated "
        "on images from IMAGES_DIR when it has none, which auto then never uses); or cascade "
        "(each image read once, and in every turn only where that view is unsure: chosen at "
        "training to keep the validation top-1 within 0.3 points)."
    ),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        help="Processes decoding images (default: one per core; 0 = none).", **options.WORKERS
    ),
]
BatchSizeOption = Annotated[
    int | None,
    typer.Option(
        help="Images per network batch (default: measured on this machine, see --threads).",
        **options.COUNT,
    ),
]
ThreadsOption = Annotated[
    int | None,
    typer.Option(
        help="Threads running the network (default: the fastest of 1 and all cores, timed "
        "with the batch size and, for --precision auto, the precision on this machine's "
        "first run of the bundle and kept in the user cache).",
        **options.COUNT,
    ),
]
SchedulerOption = Annotated[
    str | None,
    typer.Option(help="Run on a Dask cluster: its scheduler address, e.g. tcp://host:8786."),
]
ChunkSizeOption = Annotated[
    int,
    typer.Option(
        help="Images per results chunk: the most an interruption can lose.", **options.COUNT
    ),
]
OverwriteOption = Annotated[
    bool,
    typer.Option("--overwrite", help="Discard an earlier, different run in the results folder."),
]


def classify(
    bundle: BundleArg,
    images_dir: ImagesArg,
    out: OutOption,
    threshold: ThresholdOption = None,
    sample_regex: SampleRegexOption = None,
    samples_csv: SamplesOption = None,
    precision: PrecisionOption = "auto",
    workers: WorkersOption = None,
    threads: ThreadsOption = None,
    batch_size: BatchSizeOption = None,
    scheduler: SchedulerOption = None,
    chunk_size: ChunkSizeOption = 1024,
    overwrite: OverwriteOption = False,
) -> None:
    """Classify every image under IMAGES_DIR: one row per image, counts per sample.

    Writes to OUT: predictions.parquet, counts.csv, relative_abundance.csv, run.json.

    Unreadable images get status error; the run carries on and lists them at the end.

    Interrupted (Ctrl-C, kill, power cut)? Run the same command again to continue.

    Example: foramflow classify runs/bc8/bundle core_images/ --out results/core
    """
    from foramflow.classify.runner import classify_folder
    from foramflow.classify.samples import SampleRule

    bar = _ClassifyBar()
    try:
        result = classify_folder(
            bundle,
            images_dir,
            out,
            threshold=threshold,
            samples=SampleRule(
                regex=sample_regex, table=str(samples_csv) if samples_csv is not None else None
            ),
            precision=precision,
            workers=workers,
            threads=threads,
            batch_size=batch_size,
            chunk_size=chunk_size,
            scheduler=scheduler,
            overwrite=overwrite,
            progress=bar,
        )
    except KeyboardInterrupt:
        console.print(
            "[yellow]interrupted[/]: finished chunks are kept; run the same command again to "
            "continue."
        )
        raise typer.Exit(130) from None
    finally:
        bar.stop()
    _print_summary(result)
    _name_faster_sibling(bundle)


class _ClassifyBar:
    """The run's progress (:mod:`foramflow.progress`) as one bar with images per second, shown
    once the inputs are checked."""

    def __init__(self):
        from rich.progress import ProgressColumn
        from rich.text import Text

        class ImagesPerSecond(ProgressColumn):
            def render(self, task) -> Text:
                speed = task.speed
                return Text(f"{speed:,.0f} images/s" if speed else "… images/s", style="cyan")

        self.progress = progress_bar(ImagesPerSecond())
        self.task_id = self.progress.add_task("classifying", total=None, start=False)

    def message(self, text: str, *, warning: bool = False) -> None:
        self.progress.console.print(text, soft_wrap=True, markup=False)

    def task(self, description: str, total: int | None, **fields: str) -> _ClassifyBar:
        self.progress.update(self.task_id, total=total)
        self.progress.start_task(self.task_id)
        self.progress.start()
        return self

    def update(self, *, total: int | None = None, completed: int | None = None, **fields) -> None:
        self.progress.update(self.task_id, total=total, completed=completed)

    def advance(self, n: int = 1, **fields: str) -> None:
        self.progress.advance(self.task_id, n)

    def done(self) -> None:
        pass  # the bar stays until the summary: stop() takes it down

    def stop(self) -> None:
        if self.progress.live.is_started:
            self.progress.stop()


def _name_faster_sibling(bundle_path: Path) -> None:
    """Where the training run also wrote the same weights reading each image once, say so:
    on a core of hundreds of thousands of images that saves hours."""
    from foramflow.bundle import Bundle

    bundle = Bundle.load(bundle_path)
    fast = bundle.faster_sibling()
    if fast is None:
        return
    ours, theirs = ((b.meta.metrics or {}).get("accuracy") for b in (bundle, fast))
    scores = (
        "" if None in (ours, theirs) else f" (validation top-1 {theirs:.1%} against {ours:.1%})"
    )
    console.print(
        f"Faster: {fast.path} holds the same weights reading each image once rather than in "
        f"each of its turns{scores}."
    )


def _print_summary(result) -> None:
    from rich.table import Table

    from foramflow.bundle.decisions import ERROR, UNSURE

    counts, run = result.counts, result.run
    labels = [c for c in counts.columns if c not in ("depth", UNSURE, ERROR)]
    table = Table(title="Per sample", title_justify="left")
    table.add_column("sample")
    if "depth" in counts.columns:
        table.add_column("depth", justify="right")
    for name in ("images", "classified", "unsure", "errors", "most common"):
        table.add_column(name, justify="left" if name == "most common" else "right")
    for sample, row in counts.iterrows():
        classified = int(row[labels].sum())
        top = row[labels].astype(int).idxmax() if classified else "–"
        cells = [str(sample)]
        if "depth" in counts.columns:
            cells.append(f"{row['depth']:g}")
        cells += [
            str(classified + int(row[UNSURE]) + int(row[ERROR])),
            str(classified),
            str(int(row[UNSURE])),
            str(int(row[ERROR])),
            top,
        ]
        table.add_row(*cells)
    console.print(table)
    errors = result.errors
    if len(errors):
        console.print(f"[bold red]{len(errors)} image(s) could not be read[/]:")
        for row in errors.head(10).itertuples():
            console.print(f"  {row.path}: {row.error}")
        if len(errors) > 10:
            console.print(f"  … and {len(errors) - 10} more (status 'error' in predictions)")
    skipped = run.skipped or []
    if skipped:
        console.print(f"[yellow]{len(skipped)} folder(s) or link(s) could not be searched[/]:")
        for entry in skipped[:10]:
            console.print(f"  {entry['path']}: {entry['reason']}")
    rate, new = "", run.n_images - result.n_resumed
    if new > 0 and run.seconds:
        rate = f" ({new} classified in {run.seconds:.1f} s, {new / run.seconds:,.0f} images/s)"
    setup = run.setup or {}
    how = (
        f", {setup['threads']} thread(s), batches of {setup['batch_size']} ({setup['source']})"
        if setup
        else ""
    )
    console.print(
        f"{run.n_images} images, {run.n_unsure or 0} unsure, {len(errors)} errors, "
        f"{run.precision} model{how}{rate}. Results in {result.out_dir}/"
    )
