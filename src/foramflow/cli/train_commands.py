"""``train``, ``evaluate``, ``export`` and ``predict``: from a labelled image set to a bundle."""

from __future__ import annotations

from pathlib import Path

import typer

from foramflow.cli.console import RichProgress, console, fail
from foramflow.io.files import prepare_output_dir

_MODEL_HELP = (
    "network: base_cyclic, resnet_cyclic or resnet18; transfer learning on cached "
    "features: efficientnet_lite0_tl or resnet50_tl (needs --weights)"
)


def train(
    data: Path | None = typer.Argument(
        None, help="Training set: a folder per class, or a ParticleTrieur project .xml."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run folder to create."),
    model: str | None = typer.Option(None, help=f"Network (default: base_cyclic); {_MODEL_HELP}."),
    input_size: int | None = typer.Option(
        None, help="Input width in pixels (default: the model's; 128 for base_cyclic)."
    ),
    filters: int | None = typer.Option(None, help="Filters in the first block (default: 8)."),
    colour: bool | None = typer.Option(
        None, "--colour/--grey", help="Colour (3 channels) or greyscale input (default: grey)."
    ),
    pool: str | None = typer.Option(None, help="Cyclic pool: max (paper) or mean (MISO)."),
    epochs: int | None = typer.Option(
        None, help="Train a fixed number of epochs instead of the automatic ALRS schedule."
    ),
    alrs_window: int | None = typer.Option(
        None, help="ALRS window L in epochs (default: 40 under 5 000 images, 10 above 10 000)."
    ),
    alrs_drops: int | None = typer.Option(
        None, help="ALRS: stop after this many drops (default: 4)."
    ),
    max_epochs: int | None = typer.Option(None, help="ALRS: upper limit on epochs (default: 300)."),
    batch_size: int | None = typer.Option(None, help="Batch size (default: 64)."),
    learning_rate: float | None = typer.Option(
        None, "--lr", help="Adam learning rate (default: 0.001)."
    ),
    min_per_class: int | None = typer.Option(
        None, help="Drop classes with fewer images (default: 40)."
    ),
    val_fraction: float | None = typer.Option(None, help="Validation share (default: 0.2)."),
    class_weights: str | None = typer.Option(
        None,
        help="Loss weights: clamped (the paper's, favours rare classes) or none "
        "(favours overall accuracy) (default: clamped).",
    ),
    augment: bool | None = typer.Option(
        None, "--augment/--no-augment", help="Augmentation (default: on)."
    ),
    seed: int | None = typer.Option(
        None, help="Random seed for split, weights and batches (default: 0)."
    ),
    device: str | None = typer.Option(None, help="auto, cpu, cuda or cuda:N (default: auto)."),
    precision: str | None = typer.Option(
        None, help="auto, bf16 or fp32 (auto: bf16 where the hardware has it)."
    ),
    workers: int | None = typer.Option(
        None, help="Image-decoding processes (default: one per core)."
    ),
    max_pixels: int | None = typer.Option(
        None,
        help="Skip images of more pixels (width × height), refused before decoding "
        "(default: 50 million).",
    ),
    compile_network: str | None = typer.Option(
        None,
        "--compile",
        help="torch.compile the training step: auto, on or off (auto: on a GPU for 5 000+ "
        "images; on a CPU the eager step is as fast, measured).",
    ),
    cyclic: bool | None = typer.Option(
        None,
        "--cyclic/--no-cyclic",
        help="Transfer models: cyclic slice/pool in the head (default: on).",
    ),
    weights: Path | None = typer.Option(
        None, help="Transfer models: backbone ImageNet weights (a torchvision state dict)."
    ),
    augmented_copies: int | None = typer.Option(
        None,
        help="Transfer models: also cache vectors of N augmented copies per image (default: 0).",
    ),
    feature_cache: Path | None = typer.Option(
        None, help="Transfer models: feature cache folder (default: ~/.cache/foramflow/features)."
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML file of options; command-line options override it."
    ),
    resume: bool = typer.Option(False, help="Continue an interrupted run in --out."),
) -> None:
    """Train a rotation-invariant CNN, evaluate it, and export a model bundle.

    Writes a run folder with config.yaml, log.csv, checkpoints, bundle/ and
    evaluation/report.html.

    Example: foramflow train forams/ --model base_cyclic --input-size 128 --out runs/first

    Transfer learning (minutes on a CPU): foramflow train forams/ --model
    efficientnet_lite0_tl --out runs/tl
    """
    from pydantic import ValidationError

    from foramflow.train.config import TrainConfig

    options = {
        "data": str(data) if data else None,
        "out": str(out) if out else None,
        "model": model,
        "input_size": input_size,
        "filters": filters,
        "channels": None if colour is None else (3 if colour else 1),
        "pool": pool,
        "epochs": epochs,
        "alrs_window_epochs": alrs_window,
        "alrs_drops": alrs_drops,
        "max_epochs": max_epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "min_per_class": min_per_class,
        "val_fraction": val_fraction,
        "class_weights": class_weights,
        "augment": augment,
        "seed": seed,
        "device": device,
        "precision": precision,
        "workers": workers,
        "max_pixels": max_pixels,
        "compile": compile_network,
        "cyclic": cyclic,
        "weights": str(weights) if weights else None,
        "augmented_copies": augmented_copies,
        "feature_cache": str(feature_cache) if feature_cache else None,
    }
    try:
        if config:
            resolved = TrainConfig.from_yaml(config, **options)
        else:
            resolved = TrainConfig(**{k: v for k, v in options.items() if v is not None})
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in err.errors()
        )
        raise fail(f"invalid training options: {problems}") from None
    except (OSError, ValueError) as err:
        raise fail(str(err)) from None
    prepare_output_dir(resolved.out)

    from foramflow.train.loop import RunFolderExists
    from foramflow.train.transfer import trainer_class

    try:
        progress = RichProgress(console)
        trainer = trainer_class(resolved.model)(resolved, progress=progress, resume=resume)
        report = trainer.run()
    except (RunFolderExists, FileNotFoundError, ValueError) as err:
        raise fail(str(err)) from None
    except KeyboardInterrupt:
        if (Path(resolved.out) / "checkpoint_last.pt").is_file():
            console.print(
                f"continue with: foramflow train --config {Path(resolved.out) / 'config.yaml'} "
                "--resume"
            )
        raise typer.Exit(130) from None
    console.print(f"[green]Done.[/] Bundle: {Path(resolved.out) / 'bundle'}")
    typer.echo(f"Report: {report}")


def evaluate(
    bundle: Path = typer.Argument(..., help="Model bundle folder."),
    data: Path = typer.Argument(..., help="Labelled images: a folder per class."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the report and tables."),
    workers: int = typer.Option(0, help="Image-decoding processes (default: one per core)."),
) -> None:
    """Evaluate a bundle on a labelled image set (for example an independent test set).

    Classes of the set that the bundle does not know are reported and left out. The
    inference time is that of the engine classify runs, in fp32.
    """
    from foramflow.errors import ForamflowError
    from foramflow.evaluate.folder import evaluate_folder

    try:
        result = evaluate_folder(
            bundle, data, out, workers=workers or None, progress=RichProgress(console)
        )
    except ForamflowError as err:
        raise fail(str(err)) from None
    m = result.metrics
    typer.echo(f"accuracy {m['accuracy']:.4f}, mean F1 {m['macro_f1']:.4f}")
    typer.echo(f"inference {result.evaluation.inference_summary}")
    typer.echo(f"Report: {result.report}")


def export(
    run: Path = typer.Argument(..., help="Run folder written by 'foramflow train'."),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle folder, or a .zip file to write."),
) -> None:
    """Re-export a run's best network as a model bundle (a folder, or one .zip to share)."""
    from foramflow.train.rebuild import rebuild_bundle

    try:
        written = rebuild_bundle(run, out)
    except (OSError, ValueError) as err:
        raise fail(str(err)) from None
    typer.echo(f"Bundle: {written}")


def predict(
    bundle: Path = typer.Argument(..., help="Model bundle folder or .zip."),
    images: list[Path] = typer.Argument(..., help="Image files to classify."),
    threshold: float | None = typer.Option(
        None, help="Minimum top score, else 'unsure' [the bundle's, usually 0.8]."
    ),
) -> None:
    """Print the class and score of each image, using the bundle alone (ONNX Runtime)."""
    from foramflow.bundle import Bundle, BundleError
    from foramflow.bundle.engine import Engine
    from foramflow.bundle.predict import predict_paths

    try:
        loaded = Bundle.load(bundle)
        engine = Engine(loaded, precision="fp32")
    except BundleError as err:
        raise fail(str(err)) from None
    _print_notes(loaded)
    cut = loaded.threshold if threshold is None else threshold
    labels, failed = loaded.labels, 0
    try:
        for path, probs, error in predict_paths(engine, images):
            if error is not None:
                failed += 1
                typer.echo(f"{path}\terror\t{error}")
                continue
            k = int(probs.argmax())
            sure = probs[k] > loaded.class_thresholds.get(labels[k], cut)
            typer.echo(f"{path}\t{labels[k] if sure else 'unsure'}\t{probs[k]:.4f}")
    except BundleError as err:  # a network whose output width shows only when it runs
        raise fail(str(err)) from None
    if failed:
        console.print(f"[yellow]{failed} image(s) could not be read")
        raise typer.Exit(1)


def _print_notes(bundle) -> None:
    """Say which defaults a bundle takes for the fields its model.json leaves out."""
    for note in bundle.notes:
        console.print(f"[yellow]note:[/] {bundle.path}: {note}")
