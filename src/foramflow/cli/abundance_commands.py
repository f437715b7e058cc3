"""``foramflow abundance`` and ``foramflow calibrate``: abundances and thresholds to publish."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer
from rich.markup import escape

import foramflow.cli.options as options
from foramflow.cli.console import RichProgress, console


def abundance(
    results_dir: Path = typer.Argument(
        ...,
        help="Results folder of `foramflow classify` (predictions.parquet, run.json).",
        exists=True,
        file_okay=False,
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created)."),
    groups: Path = typer.Option(
        None,
        "--groups",
        help="YAML mapping classes to groups, and names to exclude from the "
        "denominator (default: each class its own group, 'unsure' excluded).",
        exists=True,
        dir_okay=False,
    ),
    human: Path = typer.Option(
        None,
        "--human",
        help="Human counts CSV: column 'sample', optional 'depth'/'age' (also "
        "'depth_m', 'age_ka' …), one column of counts per taxon (class or group names).",
        exists=True,
        dir_okay=False,
    ),
    age_model: Path = typer.Option(
        None,
        "--age-model",
        help="CSV of depth, age (first two columns, in their own units): "
        "plot against age instead of depth.",
        exists=True,
        dir_okay=False,
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
        exists=True,
    ),
    level: float = options.finite(
        default=0.95, help="Confidence level of every interval.", gt=0, lt=1
    ),
    interval: Literal["wilson", "clopper-pearson"] = typer.Option(
        "wilson", help="Interval for counts: wilson or clopper-pearson."
    ),
    bootstrap: int = typer.Option(
        1000, help="Bootstrap replicates for the corrected estimates' intervals.", **options.COUNT
    ),
    seed: int = typer.Option(0, help="Seed of the bootstrap.", **options.SEED),
    max_drift: float = options.finite(
        default=0.25,
        help="Flag a sample when the KS distance of its top probabilities to the "
        "reference exceeds this.",
        ge=0,
        le=1,
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
    bundle: Path = typer.Argument(
        ..., help="Model bundle folder to calibrate (updated).", exists=True, file_okay=False
    ),
    validation_dir: Path = typer.Argument(
        ...,
        help="Labelled images, one subfolder per class, named as the bundle's labels.",
        exists=True,
        file_okay=False,
    ),
    target_precision: float = options.finite(
        default=0.95,
        help="Choose the lowest threshold whose accepted images reach this precision.",
        gt=0,
        le=1,
    ),
    per_class: bool = typer.Option(
        False, "--per-class/--global", help="One threshold per class, or one for all."
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Folder for the curve PNG and CSV (default: BUNDLE/calibration).",
        file_okay=False,
    ),
) -> None:
    """Fit temperature scaling and choose the unsure threshold for a target precision.

    Stores in the bundle's model.json: calibration (temperature, NLL and ECE before and after,
    validation top-probability quantiles for drift checks), threshold, class_thresholds.
    Writes coverage_accuracy.png and coverage_accuracy.csv.

    Example: foramflow calibrate runs/bc8/bundle labelled_validation/ --target-precision 0.95
    """
    from foramflow.evaluate.calibration import calibrate_bundle

    result = calibrate_bundle(
        bundle,
        validation_dir,
        out,
        target_precision=target_precision,
        per_class=per_class,
        progress=RichProgress(console),
    )

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
