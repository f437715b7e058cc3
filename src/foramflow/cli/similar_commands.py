"""``similar``: the labelled images nearest to an image in transfer-learning feature space."""

from __future__ import annotations

from pathlib import Path

import typer

from foramflow.cli.console import console, fail, tsv_row


def similar(
    source: Path = typer.Argument(
        ...,
        help="A bundle trained with a transfer model (*_tl), or a feature cache folder.",
        exists=True,
    ),
    images: list[Path] = typer.Argument(
        ..., help="Image files to look up.", exists=True, dir_okay=False
    ),
    k: int = typer.Option(10, "-k", "--k", min=1, help="Neighbours to list per image."),
    weights: Path | None = typer.Option(
        None,
        help="The backbone weights file, where it is no longer at its recorded path.",
        exists=True,
        dir_okay=False,
    ),
) -> None:
    """List the labelled images most similar to each image.

    Similarity is the cosine of the angle between head feature vectors (1 = identical
    features), the same vectors the transfer tail was trained on. Prints tab-separated
    lines: image, rank, similarity, label, path of the labelled image.

    Example: foramflow similar runs/tl/bundle new/particle_0042.jpg -k 5
    """
    from foramflow.similar import build_head, embed_paths, find_weights, open_reference

    reference, spec, recorded = open_reference(source)
    weights_path = find_weights(spec, recorded, weights)
    if not len(reference.labels):
        raise fail(f"{source}: holds no labelled images")
    head = build_head(spec, weights_path)
    vectors, found, bad = embed_paths(head, images, spec)
    typer.echo(tsv_row("image", "rank", "similarity", "label", "path"))
    if len(found):
        index, similarity = reference.nearest(vectors, k)
        for query, rows, sims in zip(found, index, similarity, strict=True):
            for rank, (i, s) in enumerate(zip(rows, sims, strict=True), start=1):
                typer.echo(
                    tsv_row(query, rank, f"{s:.4f}", reference.labels[i], reference.paths[i])
                )
    for path, reason in bad.items():
        console.print(f"[red]error[/] {path}: {reason}", soft_wrap=True)
    if bad:
        raise typer.Exit(1)
