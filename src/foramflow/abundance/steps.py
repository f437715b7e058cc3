"""The abundance step of the method: a classification run's predictions to down-core
relative abundances, corrected for the classifier's confusions and compared with humans.

:func:`estimate_abundance` is what ``foramflow abundance`` runs. It writes to its output
folder: ``abundance.csv`` (raw, ACC- and EM-corrected estimates with intervals),
``class_counts.csv``, ``ratios.csv``, ``drift.csv``, agreement tables when human counts
are given, ``downcore.png`` and ``report.html`` (self-contained).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from foramflow.abundance import analysis, compare
from foramflow.abundance.analysis import Confusion, CoreAbundance, probability_labels
from foramflow.abundance.drift import DEFAULT_MAX_DISTANCE
from foramflow.abundance.groups import Grouping, Ratio
from foramflow.abundance.inputs import AbundanceError
from foramflow.abundance.intervals import INTERVAL_METHODS
from foramflow.bundle.folder import Bundle
from foramflow.bundle.schema import BundleError, Calibration
from foramflow.classify.results import PREDICTIONS_FILE, read_run
from foramflow.io.files import prepare_output_dir
from foramflow.progress import Progress, Quiet


@dataclass
class AbundanceResult:
    """What an abundance run found and wrote."""

    out: Path
    analysis: CoreAbundance  # every table, with the notes and the inputs left out
    written: list[Path]  # tables, figure and report
    report: Path
    figure: Path
    bundle: Path | None  # the model bundle given or named in run.json (None: no correction)
    calibration: Calibration = field(default_factory=Calibration)  # the bundle's


@dataclass
class _Inputs:
    predictions_path: Path
    predictions: pd.DataFrame
    grouping: Grouping
    ratios: list[Ratio]
    human: tuple[pd.DataFrame, pd.DataFrame] | None
    age_model: pd.DataFrame | None


def estimate_abundance(
    results: str | Path,
    out: str | Path,
    *,
    groups: str | Path | Grouping | None = None,
    human: str | Path | None = None,
    age_model: str | Path | None = None,
    ratios: Sequence[str | Ratio] = (),
    bundle: str | Path | None = None,
    level: float = 0.95,
    interval: str = "wilson",
    bootstrap: int = 1000,
    seed: int = 0,
    max_drift: float = DEFAULT_MAX_DISTANCE,
    depth_unit: str | None = None,
    title: str | None = None,
    truth: pd.DataFrame | None = None,
    progress: Progress | None = None,
) -> AbundanceResult:
    """Relative abundances per sample and group of a classification run, written to ``out``.

    Parameters
    ----------
    results
        Folder of a classification run (``predictions.parquet``, ``run.json``).
    groups
        Groups file (YAML mapping classes to groups, and names left out of the
        denominator) or a :class:`~foramflow.abundance.groups.Grouping`; default: each
        class its own group, ``unsure`` left out.
    human, age_model
        Human counts CSV (:func:`~foramflow.abundance.compare.read_human_counts`); depth–age
        CSV, to plot against age (:func:`~foramflow.abundance.counts.read_age_model`).
    ratios
        ``NAME=NUM/DEN`` definitions (each side a ``+``-joined list of groups or classes).
    bundle
        Model bundle for the confusion matrix and the drift reference (default: the bundle
        named in ``run.json``); without one the estimates are not corrected.
    level, interval, bootstrap, seed
        Confidence level of every interval, interval for counts (``wilson`` or
        ``clopper-pearson``), bootstrap replicates and their seed for corrected estimates.
    max_drift
        Flag a sample whose top probabilities are further than this (KS distance) from the
        reference.
    depth_unit
        Unit of the samples' depths, for the figure's axis and the tables' ``depth_<unit>``
        column (default: from the name of the predictions', the human counts' or the age
        model's depth column, e.g. ``depth_cm``; sources that disagree are refused).
    title, truth
        The core's name in the figure and report (default: the results folder's name), and
        known abundances (``sample, taxon, fraction``) drawn in the figure.
    """
    progress = progress or Quiet()
    results_dir, out = Path(results), Path(out)
    _check_intervals(level, interval)
    inputs = _read_inputs(results_dir, groups, ratios, human, age_model, bootstrap)
    analysis.stated_depth_unit(
        inputs.predictions,
        depth_unit,
        inputs.human,
        inputs.age_model,
        files=(inputs.predictions_path, human, age_model),
    )
    prepare_output_dir(out)
    bundle_path, loaded = _load_bundle(results_dir, bundle, progress)
    meta = loaded.meta if loaded else None
    calibration = (meta and meta.calibration) or Calibration()
    confusion = _confusion(loaded, inputs, progress)
    task = progress.task("correcting", inputs.predictions["sample"].nunique())
    try:
        core = analysis.analyse_core(
            inputs.predictions,
            grouping=inputs.grouping,
            ratio_definitions=inputs.ratios,
            confusion=confusion,
            human=inputs.human,
            age_model=inputs.age_model,
            level=level,
            interval_method=interval,
            n_boot=bootstrap,
            seed=seed,
            class_bias=calibration.class_bias,
            drift_reference=calibration.top_probability_quantiles,
            max_drift=max_drift,
            depth_unit=depth_unit,
            on_sample=lambda _: task.advance(),
        )
    finally:
        task.done()
    result = AbundanceResult(
        out, core, [], out / "report.html", out / "downcore.png", bundle_path, calibration
    )
    _write(result, inputs, title or results_dir.name, truth, level, interval, bootstrap)
    return result


def _check_intervals(level: float, interval: str) -> None:
    """Refuse an interval method that does not exist and a level outside (0.5, 1)."""
    if interval not in INTERVAL_METHODS:
        methods = ", ".join(INTERVAL_METHODS)
        raise AbundanceError(f"the interval for counts is one of {methods}, not {interval!r}")
    if not 0.5 < level < 1.0:
        raise AbundanceError(f"the confidence level must lie in (0.5, 1), not {level}")


def _read_inputs(results_dir: Path, groups, ratios, human, age_model, bootstrap) -> _Inputs:
    """Read and check every input before anything is written."""
    from foramflow.abundance.counts import read_age_model

    path = results_dir / PREDICTIONS_FILE
    if not path.is_file():
        raise AbundanceError(f"{path}: not found (run `foramflow classify` first)")
    try:
        predictions = pd.read_parquet(path)
    except (ValueError, OSError) as err:
        raise AbundanceError(f"{path}: not a readable predictions table ({err})") from err
    grouping = groups if isinstance(groups, Grouping) else _read_grouping(groups)
    definitions = [r if isinstance(r, Ratio) else Ratio.parse(r) for r in ratios]
    for definition in definitions:
        definition.kind(grouping)
    analysis.check_settings(
        predictions, grouping=grouping, ratio_definitions=definitions, n_boot=bootstrap
    )
    return _Inputs(
        predictions_path=path,
        predictions=predictions,
        grouping=grouping,
        ratios=definitions,
        human=compare.read_human_counts(human) if human else None,
        age_model=read_age_model(age_model) if age_model else None,
    )


def _read_grouping(path: str | Path | None) -> Grouping:
    return Grouping.from_yaml(path) if path else Grouping()


def _load_bundle(
    results_dir: Path, bundle, progress: Progress
) -> tuple[Path | None, Bundle | None]:
    """The model bundle's path (given, or named in run.json) and the bundle; None, with a
    warning, when it cannot be loaded."""
    path = Path(bundle) if bundle else None
    if path is None:
        record = read_run(results_dir)
        path = Path(record.bundle) if record is not None and record.bundle else None
    if path is None:
        return None, None
    try:
        return path, Bundle.load(path)
    except (BundleError, FileNotFoundError) as err:
        progress.message(f"{err}; abundances will not be corrected", warning=True)
        return path, None


def _confusion(bundle: Bundle | None, inputs: _Inputs, progress: Progress) -> Confusion | None:
    """The bundle's validation confusion matrix, with its validation probabilities where it
    keeps them; refused when it lacks a predicted class."""
    confusion = Confusion.from_meta(bundle.meta if bundle else None)
    if confusion is None:
        return None
    missing = [c for c in probability_labels(inputs.predictions) if c not in confusion.labels]
    if missing:
        raise AbundanceError(
            f"{bundle.path}: its validation confusion matrix lacks class(es) {missing} of "
            f"{inputs.predictions_path}"
        )
    validation = _validation(bundle, progress)
    if validation is not None:
        confusion.probabilities, confusion.true = validation
    return confusion


def _validation(bundle: Bundle, progress: Progress) -> tuple[np.ndarray, np.ndarray] | None:
    """The validation split's probabilities as classify computes them (the bundle's
    temperature applied) and true classes; None, said, where the bundle keeps none."""
    from foramflow.bundle.engine import apply_temperature
    from foramflow.bundle.validation import read_validation

    try:
        validation = read_validation(bundle)
    except BundleError as err:
        progress.message(f"{err}; EM is left without its bias correction", warning=True)
        return None
    if validation is None:
        progress.message(
            f"{bundle.path} keeps no validation probabilities (bundles trained before they "
            "were kept): EM is not corrected for its bias and its intervals leave out the "
            "validation set's uncertainty",
            warning=True,
        )
        return None
    probabilities = apply_temperature(validation.probabilities, bundle.temperature)
    return probabilities, validation.labels


def _write(result: AbundanceResult, inputs: _Inputs, title, truth, level, interval, n_boot):
    """Write the tables, the down-core figure and the report."""
    from foramflow.abundance.plots import plot_downcore, save_figure
    from foramflow.abundance.report import write_report

    written = analysis.write_tables(result.analysis, result.out)
    save_figure(plot_downcore(result.analysis, truth=truth, title=title), result.figure)
    predictions = inputs.predictions
    details = {
        "predictions": str(inputs.predictions_path),
        "model bundle": str(result.bundle or "none"),
        "calibration": f"temperature {result.calibration.temperature:.3g}"
        if result.calibration.temperature is not None
        else "none (run foramflow calibrate)",
        "images": f"{(predictions['status'] != 'error').sum()} classified, "
        f"{(predictions['status'] == 'error').sum()} unreadable",
        "intervals": f"{round(100 * level)} %: {interval} for counts, percentile bootstrap "
        f"({n_boot} replicates) for corrected estimates",
    }
    write_report(
        result.report,
        result.analysis,
        title=f"Down-core abundance: {title}",
        figures={"Down-core relative abundance": result.figure},
        level=level,
        details=details,
    )
    result.written = [*written, result.figure, result.report]
