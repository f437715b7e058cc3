"""The demo, one function per stage: a synthetic core taken from trays to abundances.

Read top to bottom, :func:`run_demo` is the method of Marchant et al. (2020) applied to a
core whose truth is known: draw the core's trays, check focus stacking on Z-stacks, cut
the trays into particle crops, label a training set, train a Base-Cyclic network and
evaluate it, classify every crop of the core, score the classifier on the core, estimate
down-core abundances (raw and corrected), and gather every figure in one report. The stages
run the library's steps, as the commands do (:func:`~foramflow.imaging.steps.fuse_planes`,
:func:`~foramflow.imaging.steps.segment_folder`, :func:`~foramflow.training.step.train`,
:func:`~foramflow.classify.runner.classify_folder`,
:func:`~foramflow.abundance.steps.estimate_abundance`), and score what they wrote.

Folder layout under ``out``::

    core/          the synthetic core: trays per sample, truth and human counts
    stacks/        Z-stacks, fused images and their errors
    crops/         one crop per segmented particle, morphometrics with the true class
    training_set/  labelled crops, one folder per class
    run/           the training run: model bundle, log, validation evaluation
    classify/      predictions and counts per sample
    evaluation/    the classifier against the truth on the core's crops
    abundance/     abundance tables, down-core figure, errors against the truth
    figures/       the demo's own figures of stacking, segmentation and scoring
    report.html    everything above on one page
    demo.json      the profile and the finished stages (a rerun reuses them)
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import foramflow.demo.figures as figures
import foramflow.demo.scores as scores
from foramflow.bundle.schema import RUN_BUNDLE
from foramflow.demo.profiles import DEFAULT, Profile
from foramflow.errors import ForamflowError
from foramflow.progress import Progress, Quiet, Task

PLANE_SPACING_UM = 70.0
"""Distance between the focal planes of the Z-stacks (Marchant et al. 2020)."""

MIN_AREA_UM2 = 1000.0
"""Smallest particle kept by segmentation (a disc of 36 µm): small fragments count too."""

TRAINING_TRAY_PARTICLES = 60
"""Particles on each tray labelled for the training set."""

MORPHOMETRICS_FILE = "morphometrics.parquet"
SAMPLE_DEPTHS_FILE = "samples.csv"
STATE_FILE = "demo.json"


class DemoFolderError(ForamflowError, RuntimeError):
    """The output folder holds something other than a demo run of the same profile."""


# -- the stages ----------------------------------------------------------------------


def generate_core(core_dir: Path, profile: Profile, progress: Progress) -> dict:
    """Draw the core: trays of particles per sample, with true and human-counted assemblages."""
    from foramflow.data.synthetic import make_core

    task = progress.task("drawing trays", profile.n_samples * profile.particles_per_sample)
    truth = make_core(
        core_dir,
        n_samples=profile.n_samples,
        particles_per_sample=profile.particles_per_sample,
        as_slides=True,
        seed=profile.seed,
        on_progress=task.advance,
    )
    return {
        "samples": profile.n_samples,
        "trays": int(truth.particles["file"].nunique()),
        "particles": len(truth.particles),
    }


def stack_zstacks(
    stacks_dir: Path, figures_dir: Path, profile: Profile, progress: Progress
) -> dict:
    """Fuse Z-stacks of trays and compare the result with the sharp image and true heights."""
    from foramflow.data.synthetic import make_zstack, save_zstack
    from foramflow.imaging.steps import fuse_planes

    task = progress.task("focus stacking", profile.n_zstacks)
    rows = []
    for i in range(profile.n_zstacks):
        stack = make_zstack(
            n_particles=profile.zstack_particles,
            plane_spacing_um=PLANE_SPACING_UM,
            seed=np.random.default_rng([profile.seed, i]),
        )
        folder = stacks_dir / f"zstack_{i + 1:02d}"
        planes = save_zstack(stack, folder)
        fused = fuse_planes(
            stack.planes,
            folder / "fused.png",
            plane_spacing_um=stack.plane_spacing_um,
            sources=planes,
        )
        particle = stack.labels > 0
        errors = scores.image_errors(fused.image, stack.planes, stack.sharp, particle)
        depth_error = np.abs(fused.depth_um - stack.depth_um)[particle]
        rows.append(
            {
                "stack": folder.name,
                "planes": len(stack.planes),
                **errors,
                "median_height_error_um": float(np.median(depth_error)),
            }
        )
        if i == 0:
            figure = figures.plot_stack(
                stack.planes,
                fused.image,
                stack.depth_um,
                fused.depth_um,
                best_plane=errors["best_plane"],
            )
            figures.save(figure, figures_dir / "stacking.png")
        task.advance()
    table = pd.DataFrame(rows)
    table.to_csv(stacks_dir / "stacks.csv", index=False)
    return {
        "stacks": len(table),
        "fused_error": float(table["fused_error"].mean()),
        "best_plane_error": float(table["best_plane_error"].mean()),
        "median_height_error_um": float(table["median_height_error_um"].median()),
    }


def _tray_pixels_per_mm() -> float:
    """The resolution of the synthetic trays."""
    from foramflow.data.synthetic.slides import PIXEL_SIZE_UM

    return 1000.0 / PIXEL_SIZE_UM


def cut_tray(image: np.ndarray, truth: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    """Segment one tray image into crops, each with the true particle it shows.

    Returns the particles (morphometrics, crop squares, ``truth_id``, ``true_class``), the
    dropped regions, and the crops (squares of 2.2 radii, padded with the tray colour).
    """
    from foramflow.imaging.segment import crop_particles, segment_image

    result = segment_image(image, pixels_per_mm=_tray_pixels_per_mm(), min_area_um2=MIN_AREA_UM2)
    particles = result["particles"]
    crops = crop_particles(image, result)
    return particles.join(scores.match_to_truth(particles, truth)), result["rejected"], crops


def segment_trays(core_dir: Path, crops_dir: Path, figures_dir: Path, progress: Progress) -> dict:
    """Cut every tray of the core into one crop per particle, measured, with its true class.

    The trays are segmented as ``foramflow segment`` does (:func:`segment_folder`), into
    ``crops_dir``: the input folder of classification. The morphometrics tables gain the
    true particle of each crop (``truth_id``, ``true_class``), and name each crop's tray
    (``source``) as the truth does, relative to the core's folder.
    """
    from foramflow.data.synthetic import TRUTH_ABUNDANCE_FILE, TRUTH_PARTICLES_FILE
    from foramflow.data.synthetic.core import SAMPLES_DIR
    from foramflow.imaging.steps import segment_folder
    from foramflow.io.tables import write_csv, write_parquet

    truth = pd.read_csv(core_dir / TRUTH_PARTICLES_FILE)
    result = segment_folder(
        core_dir / SAMPLES_DIR,
        crops_dir,
        pixels_per_mm=_tray_pixels_per_mm(),
        min_area_um2=MIN_AREA_UM2,
        progress=progress,
    )
    crops = match_crops_to_truth(result.particles, truth, core_dir)
    write_parquet(crops, crops_dir / MORPHOMETRICS_FILE)
    write_csv(crops, crops_dir / "morphometrics.csv")
    depths = pd.read_csv(core_dir / TRUTH_ABUNDANCE_FILE)[["sample", "depth_m"]]
    write_csv(depths, crops_dir / SAMPLE_DEPTHS_FILE)
    _plot_segmentation(core_dir, crops_dir, crops, truth, figures_dir)

    found = crops.loc[crops["truth_id"] >= 0, ["source", "truth_id"]].drop_duplicates()
    return {
        "trays": len(result.segmented),
        "true_particles": len(truth),
        "crops": len(crops),
        "crops_matched": int((crops["truth_id"] >= 0).sum()),
        "true_particles_found": len(found),
        "regions_dropped": len(result.rejected),
    }


def match_crops_to_truth(particles: pd.DataFrame, truth: pd.DataFrame, core_dir: Path):
    """The morphometrics table with each crop's true particle, its tray named as in the
    truth (relative to ``core_dir``)."""
    trays = [Path(source).relative_to(core_dir).as_posix() for source in particles["source"]]
    particles = particles.assign(source=trays)
    matched = [
        scores.match_to_truth(on_tray, truth[truth["file"] == tray])
        for tray, on_tray in particles.groupby("source", sort=False)
    ]
    return particles.join(pd.concat(matched))


def _plot_segmentation(core_dir, crops_dir, crops, truth, figures_dir) -> None:
    """The first tray with its particles and the truth; a gallery of crops per class."""
    from foramflow.io.images import read_image

    tray = crops["source"].iloc[0]
    image, on_tray = read_image(core_dir / tray), crops[crops["source"] == tray]
    figure = figures.plot_segmentation(image, on_tray, truth[truth["file"] == tray])
    figures.save(figure, figures_dir / "segmentation.png")
    figures.save(figures.plot_crop_gallery(crops_dir, crops), figures_dir / "gallery.png")


def label_training_set(training_dir: Path, profile: Profile, progress: Progress) -> dict:
    """Label a training set: segment trays holding every class in equal shares, and file
    each crop under its true class, one folder per class, as a specialist would.

    The trays are not the core's (another seed); crops that show no single true particle
    are left out, as a specialist would leave them unlabelled.
    """
    from foramflow.data.synthetic import MORPHOTYPES, make_slide
    from foramflow.imaging.save import save_image
    from foramflow.imaging.segment import crop_filename

    n_trays = -(-profile.train_per_class * len(MORPHOTYPES) // TRAINING_TRAY_PARTICLES)
    task = progress.task("labelling trays", n_trays)
    labelled = []
    for i in range(n_trays):
        tray = make_slide(
            n_particles=TRAINING_TRAY_PARTICLES,
            seed=np.random.default_rng([profile.seed + 1, i]),
        )
        particles, _, crops = cut_tray(tray.image, tray.truth)
        for (_, particle), crop in zip(particles.iterrows(), crops):
            if particle["true_class"] != scores.NO_MATCH:
                path = f"{particle['true_class']}/{crop_filename(f'tray_{i + 1:03d}', particle)}"
                save_image(training_dir / path, crop)
                labelled.append(particle["true_class"])
        task.advance()
    per_class = pd.Series(labelled).value_counts()
    return {
        "trays": n_trays,
        "images": len(labelled),
        "classes": len(per_class),
        "fewest_per_class": int(per_class.min()),
    }


def train_network(training_dir: Path, run_dir: Path, profile: Profile, progress: Progress) -> dict:
    """Train a Base-Cyclic network for a fixed number of epochs; evaluate it on validation."""
    from foramflow.training.step import train

    result = train(
        training_dir,
        run_dir,
        model="base_cyclic",
        input_size=profile.input_size,
        epochs=profile.epochs,
        batch_size=profile.batch_size,
        min_per_class=profile.min_per_class,
        seed=profile.seed,
        progress=progress,
    )
    log = pd.read_csv(run_dir / "log.csv")
    return {
        "epochs": len(log),
        "validation_accuracy": result.metrics["accuracy"],
        "validation_macro_f1": result.metrics["macro_f1"],
        "training_images_per_s": float(log["train_images_per_s"].median()),
        "report": str(result.report.relative_to(run_dir.parent)),
    }


def classify_crops(
    bundle_dir: Path, crops_dir: Path, classify_dir: Path, progress: Progress
) -> dict:
    """Classify every crop of the core; counts per sample at the samples' depths."""
    from foramflow.classify.runner import classify_folder
    from foramflow.classify.samples import SampleRule

    result = classify_folder(
        bundle_dir,
        crops_dir,
        classify_dir,
        samples=SampleRule(table=str(crops_dir / SAMPLE_DEPTHS_FILE)),
        progress=progress,
    )
    return {
        "images": int(result.run.n_images),
        "unsure": int(result.run.n_unsure),
        "errors": len(result.errors),
        "threshold": result.run.threshold,
    }


def evaluate_on_core(
    classify_dir: Path,
    crops_dir: Path,
    evaluation_dir: Path,
    figures_dir: Path,
    progress: Progress,
) -> dict:
    """Score the predictions for the core's crops against the particles they came from."""
    from foramflow.bundle.decisions import UNSURE
    from foramflow.classify.results import PREDICTIONS_FILE

    task = progress.task("scoring crops", 1)
    predictions = pd.read_parquet(classify_dir / PREDICTIONS_FILE, columns=["path", "class"])
    crops = pd.read_parquet(crops_dir / MORPHOMETRICS_FILE, columns=["path", "true_class"])
    joined = crops.merge(predictions, on="path", how="left", validate="one_to_one")
    known = joined[joined["true_class"] != scores.NO_MATCH]
    decided = known[known["class"] != UNSURE]
    matrix = pd.crosstab(known["true_class"], known["class"])
    columns = sorted(set(matrix.columns) - {UNSURE}) + [UNSURE] * (UNSURE in matrix.columns)
    matrix = matrix[columns]
    evaluation_dir.mkdir(parents=True, exist_ok=True)
    matrix.to_csv(evaluation_dir / "core_confusion.csv")
    figures.save(figures.plot_core_confusion(matrix), figures_dir / "core_confusion.png")
    task.advance()
    return {
        "crops_scored": len(known),
        "accuracy_all": float((known["class"] == known["true_class"]).mean()),
        "accuracy_decided": float((decided["class"] == decided["true_class"]).mean()),
        "unsure_share": float(1 - len(decided) / max(len(known), 1)),
    }


def estimate_downcore_abundance(
    classify_dir: Path,
    core_dir: Path,
    bundle_dir: Path,
    abundance_dir: Path,
    profile: Profile,
    progress: Progress,
) -> dict:
    """Relative abundances per sample (raw, ACC- and EM-corrected), against humans and truth."""
    from foramflow.abundance.steps import estimate_abundance
    from foramflow.data.synthetic import HUMAN_COUNTS_FILE

    truth, drawn = _true_fractions(core_dir)
    result = estimate_abundance(
        classify_dir,
        abundance_dir,
        human=core_dir / HUMAN_COUNTS_FILE,
        bundle=bundle_dir,
        bootstrap=profile.bootstrap,
        seed=profile.seed,
        title="synthetic core (truth dashed)",
        truth=truth,
        progress=progress,
    )
    core = result.analysis
    estimates = {
        "human count": core.human,
        "particles on the trays": drawn,
        **dict(tuple(core.abundance.groupby("method", sort=False))),
    }
    errors = scores.abundance_errors(estimates, truth).rename_axis("estimate")
    errors.to_csv(abundance_dir / "errors_vs_truth.csv")
    return {
        "samples": len(core.positions),
        "mae_pp": {name: float(errors.at[name, "all"]) for name in errors.index},
    }


def _true_fractions(core_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the true relative abundances, those of the particles drawn on the trays), as long
    tables of sample, taxon, fraction."""
    from foramflow.data.synthetic import TRUTH_ABUNDANCE_FILE, TRUTH_PARTICLES_FILE

    true_table = pd.read_csv(core_dir / TRUTH_ABUNDANCE_FILE)
    classes = [c for c in true_table.columns if c not in ("sample", "depth_m")]
    particles = pd.read_csv(core_dir / TRUTH_PARTICLES_FILE)
    drawn = pd.crosstab(particles["sample"], particles["class"], normalize="index")
    drawn = drawn.reindex(columns=classes, fill_value=0.0).reset_index()
    return scores.long_fractions(true_table, classes), scores.long_fractions(drawn, classes)


# -- running them --------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    folder: str
    title: str
    run: Callable[[Progress], dict]


class _StageTask:
    """A task that is done once, however often a stage and its steps say so."""

    def __init__(self, task: Task):
        self.task, self.finished = task, False

    def advance(self, n: int = 1, **fields: str) -> None:
        self.task.advance(n, **fields)

    def update(
        self, *, total: int | None = None, completed: int | None = None, **fields: str
    ) -> None:
        self.task.update(total=total, completed=completed, **fields)

    def done(self) -> None:
        if not self.finished:
            self.finished = True
            self.task.done()


class _StageTasks:
    """A stage's view of the progress: every task it opened is closed when it ends."""

    def __init__(self, progress: Progress):
        self.progress, self.opened = progress, []

    def message(self, text: str, *, warning: bool = False) -> None:
        self.progress.message(text, warning=warning)

    def task(self, description: str, total: int | None, **fields: str) -> Task:
        task = _StageTask(self.progress.task(description, total, **fields))
        self.opened.append(task)
        return task

    def close(self) -> None:
        for task in self.opened:
            task.done()


def run_demo(
    out: str | Path, *, profile: Profile = DEFAULT, progress: Progress | None = None
) -> Path:
    """Run the whole demo into ``out``; returns the path of ``report.html``.

    A folder from an earlier demo run of the same profile is continued: finished stages are
    reused, an unfinished one is redone from scratch. Any other non-empty folder is refused
    with :class:`DemoFolderError`.
    """
    from foramflow.demo.report import write_demo_report

    out = Path(out)
    progress = progress or Quiet()
    state = _open_state(out, profile)
    stages = demo_stages(out, profile)
    started = time.perf_counter()
    for number, stage in enumerate(stages, start=1):
        heading = f"{number}/{len(stages) + 1} {stage.title}"
        if stage.folder in state["stages"]:
            progress.message(f"{heading}: reused from {out / stage.folder}")
            continue
        state["stages"][stage.folder] = _run_stage(stage, out, heading, progress)
        _write_state(out, state)
    progress.message(f"{len(stages) + 1}/{len(stages) + 1} Write the report")
    report = write_demo_report(out, state)
    progress.message(f"Demo finished in {time.perf_counter() - started:.1f} s")
    return report


def demo_stages(out: Path, profile: Profile) -> list[Stage]:
    """The stages of the method, in order, each with the folder under ``out`` it fills."""
    bundle, shown = out / "run" / RUN_BUNDLE, out / "figures"
    return [
        Stage("core", "Draw a synthetic core", lambda p: generate_core(out / "core", profile, p)),
        Stage(
            "stacks",
            "Focus-stack Z-stacks",
            lambda p: stack_zstacks(out / "stacks", shown, profile, p),
        ),
        Stage(
            "crops",
            "Segment the trays",
            lambda p: segment_trays(out / "core", out / "crops", shown, p),
        ),
        Stage(
            "training_set",
            "Label a training set",
            lambda p: label_training_set(out / "training_set", profile, p),
        ),
        Stage(
            "run",
            "Train and evaluate Base-Cyclic",
            lambda p: train_network(out / "training_set", out / "run", profile, p),
        ),
        Stage(
            "classify",
            "Classify every crop",
            lambda p: classify_crops(bundle, out / "crops", out / "classify", p),
        ),
        Stage(
            "evaluation",
            "Score the crops against the truth",
            lambda p: evaluate_on_core(
                out / "classify", out / "crops", out / "evaluation", shown, p
            ),
        ),
        Stage(
            "abundance",
            "Estimate down-core abundances",
            lambda p: estimate_downcore_abundance(
                out / "classify", out / "core", bundle, out / "abundance", profile, p
            ),
        ),
    ]


def _run_stage(stage: Stage, out: Path, heading: str, progress: Progress) -> dict:
    """Run one stage from scratch in its own folder; returns its record for the state."""
    shutil.rmtree(out / stage.folder, ignore_errors=True)  # an unfinished earlier try
    (out / stage.folder).mkdir(parents=True)
    progress.message(heading)
    clock = time.perf_counter()
    tasks = _StageTasks(progress)
    try:
        summary = stage.run(tasks)
    finally:
        tasks.close()
    seconds = time.perf_counter() - clock
    progress.message(f"{heading} done in {seconds:.1f} s")
    return {"title": stage.title, "seconds": round(seconds, 1), "summary": summary}


def _open_state(out: Path, profile: Profile) -> dict:
    path = out / STATE_FILE
    if path.is_file():
        state = json.loads(path.read_text())
        if state.get("profile") != profile.to_dict():
            raise DemoFolderError(
                f"{out} holds a demo run with the {state.get('profile', {}).get('name')!r} "
                f"profile, not {profile.name!r}: choose another folder, or delete {out}"
            )
        return state
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DemoFolderError(
            f"{out} exists and is not a demo folder: choose another folder, or delete {out}"
        )
    state = {"profile": profile.to_dict(), "stages": {}}
    _write_state(out, state)
    return state


def _write_state(out: Path, state: dict) -> None:
    from foramflow.io.files import write_json_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / STATE_FILE, state)
