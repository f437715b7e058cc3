"""``foramflow abundance`` and ``foramflow calibrate``: abundances and thresholds to publish."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from foramflow.cli.console import RichProgress, console, fail, progress_bar


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
    depth_unit: str = typer.Option(
        None,
        "--depth-unit",
        help="Unit of the samples' depths, e.g. cm or m (default: from the --human or "
        "--age-model depth column's name, e.g. depth_cm).",
    ),
) -> None:
    """Relative abundances per sample and group, corrected and compared with human counts.

    Writes to OUT: abundance.csv (raw, ACC- and EM-corrected estimates with intervals),
    class_counts.csv, ratios.csv, drift.csv, agreement tables when --human is given,
    downcore.png and report.html (self-contained).

    Example: foramflow abundance results/core --out abundance/core --groups groups.yaml
    --human human.csv --ratio 'fragmentation=fragment/fragment+planktonic'
    """
    from foramflow.abundance.steps import estimate_abundance

    result = estimate_abundance(
        results_dir,
        out,
        groups=groups,
        human=human,
        age_model=age_model,
        ratios=ratio or [],
        bundle=bundle,
        level=level,
        interval=interval,
        bootstrap=bootstrap,
        seed=seed,
        max_drift=max_drift,
        depth_unit=depth_unit,
        progress=RichProgress(console),
    )
    _print_findings(result.analysis)
    console.print(f"Wrote {len(result.written)} files to {out} (open {result.report.name}).")


def _print_findings(core) -> None:
    """The inputs left out, the notes, and the samples flagged for drift."""
    for warning in core.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    for note in core.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    flagged = core.drift.index[core.drift["flagged"]].tolist()
    if flagged:
        console.print(
            f"[yellow]drift warning[/] for {len(flagged)} sample(s): "
            + ", ".join(map(str, flagged))
        )


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
