"""``ensemble``: several trained models joined into one bundle that averages them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from foramflow.cli.console import console


def ensemble(
    members: Annotated[
        list[Path], typer.Argument(help="Model bundles, or run folders holding one.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The ensemble bundle to write.")],
) -> None:
    """Join models into one bundle whose probabilities are the mean of theirs.

    Members may read different input sizes and grey or colour images: the ensemble takes
    the largest size (colour if any member reads colour) and gives each member its own.
    classify, predict and evaluate use it as any bundle.

    Example: foramflow ensemble runs/tl runs/bc --out ensemble_bundle
    """
    from foramflow.ensemble import ensemble_bundles

    folder = ensemble_bundles(members, out)
    console.print(f"Ensemble of {len(members)} models: {folder}")
