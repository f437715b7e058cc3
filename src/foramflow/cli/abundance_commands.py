"""``foramflow abundance`` and ``foramflow calibrate``: abundances and thresholds to publish."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from foramflow.cli.console import console, fail, progress_bar


def abundance(
    results_dir: Path = typer.Argument(
        ..., help="Results folder of `foramflow classify` (predictions.parquet, run.json)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created)."),
    groups: Path = typer.Option(
        None,
        "--groups",
        help="YAML mapping classes to groups, and names to exclude from the "
        "denominator (default: each class its own group, 'unsure' excluded).",
    ),
    human: Path = typer.Option(
        None,
        "--human",
        help="Human counts CSV: column 'sample', optional 'depth'/'age' (also "
        "'depth_m', 'age_ka' …), one column of counts per taxon (class or group names).",
    ),
    age_model: Path = typer.Option(
        None,
        "--age-model",
        help="CSV of depth, age (first two columns, in their own units): "
        "plot against age instead of depth.",
    ),
    ratio: list[str] = typer.Option(
        None,
        "--ratio",
        help="NAME=NUM/DEN, each side a +-joined list of groups or classes, "
        "e.g. 'benthic %=benthic/benthic+planktonic'. Repeatable.",
    ),
    bundle: Path = typer.Option(
        None,
        "--bundle",
        help="Model bundle for the confusion matrix and drift reference "
        "(default: the bundle named in run.json).",
    ),
    level: float = typer.Option(0.95, help="Confidence level of every interval."),
    interval: str = typer.Option("wilson", help="Interval for counts: wilson or clopper-pearson."),
    bootstrap: int = typer.Option(
        1000, help="Bootstrap replicates for the corrected estimates' intervals."
    ),
    seed: int = typer.Option(0, help="Seed of the bootstrap."),
    max_drift: float = typer.Option(
        0.25,
        help="Flag a sample when the KS distance of its top probabilities to the "
        "reference exceeds this.",
    ),
) -> None:
    """Relative abundances per sample and group, corrected and compared with human counts.

    Writes to OUT: abundance.csv (raw, ACC- and EM-corrected estimates with intervals),
    class_counts.csv, ratios.csv, drift.csv, agreement tables when --human is given,
    downcore.png and report.html (self-contained).

    Example: foramflow abundance results/core --out abundance/core --groups groups.yaml
    --human human.csv --ratio 'fragmentation=fragment/fragment+planktonic'
    """
    import pandas as pd

    from foramflow.abundance.analysis import (
        Confusion,
        analyse_core,
        check_settings,
        write_tables,
    )
    from foramflow.abundance.compare import read_human_counts
    from foramflow.abundance.counts import read_age_model
    from foramflow.abundance.groups import Grouping, GroupingError, Ratio
    from foramflow.abundance.intervals import INTERVAL_METHODS
    from foramflow.abundance.plots import plot_downcore, save_figure
    from foramflow.abundance.report import write_report
    from foramflow.bundle import Bundle, BundleError
    from foramflow.bundle.schema import Calibration
    from foramflow.io.files import prepare_output_dir

    predictions_path = results_dir / "predictions.parquet"
    if not predictions_path.is_file():
        raise fail(f"{predictions_path}: not found (run `foramflow classify` first)")
    if interval not in INTERVAL_METHODS:
        raise fail(f"--interval: use one of {', '.join(INTERVAL_METHODS)}, not {interval!r}")
    if not 0.5 < level < 1.0:
        raise fail(f"--level must lie in (0.5, 1), not {level}")
    try:
        predictions = pd.read_parquet(predictions_path)
    except (ValueError, OSError) as err:
        raise fail(f"{predictions_path}: not a readable predictions table ({err})") from err
    try:
        grouping = Grouping.from_yaml(groups) if groups else Grouping()
        ratios = [Ratio.parse(text) for text in ratio or []]
        for definition in ratios:
            definition.kind(grouping)
        check_settings(predictions, grouping=grouping, ratio_definitions=ratios, n_boot=bootstrap)
        human_counts = read_human_counts(human) if human else None
        ages = read_age_model(age_model) if age_model else None
    except (GroupingError, ValueError, OSError) as err:
        raise fail(str(err)) from err
    prepare_output_dir(out)

    meta, bundle_path = None, bundle
    if bundle_path is None and (results_dir / "run.json").is_file():
        bundle_path = Path(json.loads((results_dir / "run.json").read_text()).get("bundle", ""))
    if bundle_path:
        try:
            meta = Bundle.load(bundle_path).meta
        except (BundleError, FileNotFoundError) as err:
            console.print(f"[yellow]warning:[/] {err}; abundances will not be corrected")
    calibration = (meta and meta.calibration) or Calibration()

    progress = progress_bar()
    with progress:
        samples = predictions["sample"].nunique()
        task = progress.add_task("correcting", total=samples)
        try:
            result = analyse_core(
                predictions,
                grouping=grouping,
                ratio_definitions=ratios,
                confusion=Confusion.from_meta(meta),
                human=human_counts,
                age_model=ages,
                level=level,
                interval_method=interval,
                n_boot=bootstrap,
                seed=seed,
                class_bias=calibration.class_bias,
                drift_reference=calibration.top_probability_quantiles,
                max_drift=max_drift,
                on_sample=lambda _: progress.advance(task),
            )
        except ValueError as err:
            raise fail(f"{predictions_path}: {err}") from err

    written = write_tables(result, out)
    figure = out / "downcore.png"
    save_figure(plot_downcore(result, title=results_dir.name), figure)
    details = {
        "predictions": str(predictions_path),
        "model bundle": str(bundle_path or "none"),
        "calibration": f"temperature {calibration.temperature:.3g}"
        if calibration.temperature is not None
        else "none (run foramflow calibrate)",
        "images": f"{(predictions['status'] != 'error').sum()} classified, "
        f"{(predictions['status'] == 'error').sum()} unreadable",
        "intervals": f"{round(100 * level)} %: {interval} for counts, percentile bootstrap "
        f"({bootstrap} replicates) for corrected estimates",
    }
    report = write_report(
        out / "report.html",
        result,
        title=f"Down-core abundance: {results_dir.name}",
        figures={"Down-core relative abundance": figure},
        level=level,
        details=details,
    )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    flagged = result.drift.index[result.drift["flagged"]].tolist()
    if flagged:
        console.print(
            f"[yellow]drift warning[/] for {len(flagged)} sample(s): "
            + ", ".join(map(str, flagged))
        )
    console.print(f"Wrote {len(written) + 2} files to {out} (open {report.name}).")


def calibrate(
    bundle: Path = typer.Argument(..., help="Model bundle folder to calibrate (updated)."),
    validation_dir: Path = typer.Argument(
        ..., help="Labelled images, one subfolder per class, named as the bundle's labels."
    ),
    target_precision: float = typer.Option(
        0.95, help="Choose the lowest threshold whose accepted images reach this precision."
    ),
    per_class: bool = typer.Option(
        False, "--per-class/--global", help="One threshold per class, or one for all."
    ),
    out: Path = typer.Option(
        None, "--out", "-o", help="Folder for the curve PNG and CSV (default: BUNDLE/calibration)."
    ),
) -> None:
    """Fit temperature scaling and choose the unsure threshold for a target precision.

    Stores in the bundle's model.json: calibration (temperature, NLL and ECE before and after,
    validation top-probability quantiles for drift checks), threshold, class_thresholds.
    Writes coverage_accuracy.png and coverage_accuracy.csv.

    Example: foramflow calibrate runs/bc8/bundle labelled_validation/ --target-precision 0.95
    """
    from foramflow.bundle import BundleError
    from foramflow.evaluate.calibration import (
        CalibrationError,
        calibrate_bundle,
        validation_images,
    )

    if not 0.0 < target_precision <= 1.0:
        raise fail(f"--target-precision must lie in (0, 1], not {target_precision}")
    try:
        images = validation_images(bundle, validation_dir)
    except (BundleError, CalibrationError, FileNotFoundError) as err:
        raise fail(str(err)) from err
    for folder in images.unknown_folders:
        console.print(f"[yellow]warning:[/] {validation_dir / folder}: not a bundle label, skipped")

    progress = progress_bar()
    with progress:
        task = progress.add_task("predicting", total=len(images.paths))
        try:
            result = calibrate_bundle(
                bundle,
                images,
                target_precision=target_precision,
                per_class=per_class,
                out_dir=out,
                on_image=lambda: progress.advance(task),
            )
        except (BundleError, CalibrationError) as err:
            raise fail(str(err)) from err

    for path, reason in result.errors:
        console.print(f"[yellow]skipped[/] {path}: {reason}")
    console.print(
        f"temperature {result.temperature:.3f}: validation NLL {result.nll_before:.4f} → "
        f"{result.nll_after:.4f}, ECE {result.ece_before:.4f} → {result.ece_after:.4f} "
        f"({result.n_images} images)"
    )
    console.print(
        f"threshold {result.threshold:.3f}: coverage {result.coverage:.1%}, "
        f"accuracy {result.accuracy:.1%} (target precision {target_precision:.1%})"
    )
    for label, value in (result.class_thresholds or {}).items():
        console.print(f"  {label}: {value:.3f}")
    for label in result.unreachable:
        console.print(
            f"[yellow]warning:[/] {label}: target precision not reached; threshold "
            "1.0 (always unsure)"
        )
    console.print(f"Updated {Path(bundle) / 'model.json'}; curve in {result.curve_png}")
