"""``foramflow label``, ``label-predict`` and ``label-export``: build a training set by hand."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

import foramflow.cli.options as options
from foramflow.cli.console import console, fail, progress_bar


class ExportFormat(str, Enum):
    training_set = "training-set"
    csv = "csv"
    particletrieur = "particletrieur"
    ecotaxa = "ecotaxa"


def label(
    project_dir: Path = typer.Argument(
        ..., help="Project folder; the label store lives here.", file_okay=False
    ),
    images: list[Path] = typer.Option(
        [],
        "--images",
        "-i",
        help="Add the images under this folder (repeatable).",
        exists=True,
        file_okay=False,
    ),
    metadata: Path = typer.Option(
        None,
        "--metadata",
        help="CSV giving sample and depth_cm per sample (or per path).",
        exists=True,
        dir_okay=False,
    ),
    depth_pattern: str = typer.Option(
        r"(\d+(?:\.\d+)?)\s*cm",
        "--depth-pattern",
        help="Regular expression whose first group, found in a folder name, is the depth in cm.",
        callback=options.Regex(groups=1).check,
    ),
    import_xml: Path = typer.Option(
        None,
        "--import-xml",
        help="Add the images and labels of a ParticleTrieur project.",
        exists=True,
        dir_okay=False,
    ),
    host: str = typer.Option(
        "127.0.0.1", help="Address to serve on; one that is not loopback needs a token."
    ),
    port: int = typer.Option(8765, help="Port to serve on.", **options.PORT),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Start the web app."),
) -> None:
    """Label particle images in the browser: grid, keyboard labels, pre-labels, exports.

    Images are registered where they lie and never moved or changed; sample = folder name,
    depth from --depth-pattern or a --metadata CSV. Open the printed address in a browser.
    Bound to an address other than a loopback one (127.x.x.x, ::1, localhost), the app
    requires the token it prints.

    Example: foramflow label project/ --images crops/ --serve
    """
    from foramflow.label.export import import_particletrieur
    from foramflow.label.store import LabelStore

    store = LabelStore(project_dir)
    for folder in images:
        with progress_bar() as bar:
            task = bar.add_task(f"adding {folder}", total=None)
            added, problems = store.add_images(
                folder,
                metadata_csv=metadata,
                depth_pattern=depth_pattern,
                progress=lambda n, task=task: bar.update(task, completed=n),
            )
        console.print(f"{folder}: {added} new images")
        for problem in problems:
            console.print(f"[yellow]skipped[/] {problem}")
    if import_xml is not None:
        added = import_particletrieur(store, import_xml)
        console.print(f"{import_xml}: {added} images imported")
    console.print(f"{store.path}: {store.count()} images")
    if not serve:
        return
    _serve(project_dir, host=host, port=port)


def _serve(project_dir: Path, *, host: str, port: int) -> None:
    import secrets

    import uvicorn

    from foramflow.label.app import create_app
    from foramflow.label.guard import is_loopback_name

    token = None if is_loopback_name(host) else secrets.token_urlsafe(24)
    app = create_app(project_dir, token=token)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    console.print(f"[bold]foramflow label[/] at {url}  (Ctrl+C to stop)")
    if token:
        console.print(f"token: {token}  (every request needs it)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def label_predict(
    project_dir: Path = typer.Argument(
        ..., help="Project folder made by `foramflow label`.", exists=True, file_okay=False
    ),
    bundle: Path = typer.Argument(
        ..., help="Model bundle folder (model.onnx + model.json).", exists=True
    ),
) -> None:
    """Pre-label every image of a project with a model bundle; list disagreements.

    Example: foramflow label-predict project/ runs/bc/bundle
    """
    from foramflow.label.prelabel import prelabel
    from foramflow.label.store import STORE_FILE, LabelStore

    if not (project_dir / STORE_FILE).is_file():
        raise fail(f"{project_dir}: no label project here (run `foramflow label` first)")
    store = LabelStore(project_dir)
    with progress_bar() as bar:
        task = bar.add_task("predicting", total=store.count())
        count, problems = prelabel(
            store, bundle, progress=lambda done, total: bar.update(task, completed=done)
        )
    for problem in problems:
        console.print(f"[yellow]unreadable[/] {problem}")
    disagreements = store.disagreements()
    console.print(
        f"{count} images predicted; {len(disagreements)} validated images disagree with the model"
    )


def label_export(
    project_dir: Path = typer.Argument(
        ..., help="Project folder made by `foramflow label`.", exists=True, file_okay=False
    ),
    dest: Path = typer.Argument(
        ..., help="Output folder (training set, EcoTaxa) or file (CSV, .xml, EcoTaxa .zip)."
    ),
    format: ExportFormat = typer.Option(ExportFormat.training_set, "--format", "-f"),
    hard_links: bool = typer.Option(
        False, "--hard-links", help="Training set: hard links instead of copies."
    ),
) -> None:
    """Export labels: folder-per-class training set, CSV, ParticleTrieur XML or EcoTaxa TSV.

    Example: foramflow label-export project/ training_set/ --format training-set
    """
    from foramflow.label import export
    from foramflow.label.store import STORE_FILE, LabelStore

    if not (project_dir / STORE_FILE).is_file():
        raise fail(f"{project_dir}: no label project here (run `foramflow label` first)")
    store = LabelStore(project_dir)
    try:
        if format is ExportFormat.training_set:
            counts = export.export_training_set(store, dest, hard_links=hard_links)
            console.print(f"{dest}: {sum(counts.values())} images in {len(counts)} classes")
        elif format is ExportFormat.csv:
            console.print(f"{dest}: {export.export_labels_csv(store, dest)} rows")
        elif format is ExportFormat.particletrieur:
            console.print(f"{dest}: {export.export_particletrieur(store, dest)} images")
        else:
            console.print(f"{export.export_ecotaxa(store, dest)}: written")
    except OSError as err:
        raise fail(f"{dest}: {err.strerror or err}") from None
