"""``ensemble``: several trained models joined into one bundle that averages them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from foramflow.cli.console import console


def ensemble(
    members: Annotated[
        list[Path], typer.Argument(help="Model bundles, or run folders holding one.", exists=True)
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The ensemble bundle to write.")],
) -> None:
    """Join models into one bundle whose probabilities are the mean of theirs.

    Members may read different input sizes and grey or colour images: the ensemble takes
    the largest size (colour if any member reads colour) and gives each member its own.
    classify, predict and evaluate use it as any bundle. Members trained on the same set
    with the same seed were validated on the same images: the ensemble keeps the mean of
    their validation outputs, scores and calibrates itself on them, and the abundance step
    corrects with them.

    Example: foramflow ensemble runs/tl runs/bc --out ensemble_bundle
    """
    from foramflow.bundle import Bundle
    from foramflow.ensemble import ensemble_bundles

    folder = ensemble_bundles(members, out)
    console.print(f"Ensemble of {len(members)} models: {folder}")
    metrics = Bundle.load(folder).meta.metrics
    if metrics:
        console.print(
            f"On the members' validation split: accuracy {metrics['accuracy']:.1%}, mean F1 "
            f"over classes {metrics['macro_f1']:.3f} ({metrics['n_images']} images)"
        )
    else:
        console.print(
            "The members were not all validated on the same images: the ensemble has no "
            "validation set. foramflow evaluate scores it and foramflow calibrate calibrates "
            "it on labelled images."
        )
