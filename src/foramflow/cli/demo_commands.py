"""``foramflow demo``: the whole workflow on a synthetic core whose truth is known."""

from __future__ import annotations

from pathlib import Path

import typer

from foramflow.cli.console import RichProgress, console


def demo(
    out: Path = typer.Option(
        Path("foramflow-demo"),
        "--out",
        "-o",
        help="Demo folder (created; a rerun continues it).",
        file_okay=False,
    ),
    quick: bool = typer.Option(
        False, "--quick", help="A smaller core and a shorter training: about 3 CPU-minutes."
    ),
) -> None:
    """Run every step on a synthetic core and score it against the truth, in one report.

    Stages: draw a core of tray images with known assemblages; fuse Z-stacks; segment the trays.

    Then: label a training set; train and evaluate Base-Cyclic; classify every crop.

    Last: down-core abundances (raw, corrected) against human counts and the truth.

    The last line printed is the report's path. The default run costs about 11 CPU-minutes.

    A rerun into the same folder reuses finished stages; any other folder is refused.

    Example: foramflow demo --out foramflow-demo --quick
    """
    import foramflow.demo as demos

    profile = demos.QUICK if quick else demos.DEFAULT
    report = demos.run_demo(out, profile=profile, progress=RichProgress(console))
    typer.echo(f"Report: {report.resolve()}")
