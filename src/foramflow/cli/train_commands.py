"""``train``, ``evaluate``, ``export`` and ``predict``: from a labelled image set to a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

import foramflow.cli.options as options
from foramflow.cli.console import RichProgress, console, tsv_row
from foramflow.io.files import prepare_output_dir

_MODEL_HELP = (
    "auto chooses for the set and the machine and says why; the paper's networks: "
    "base_cyclic, resnet_cyclic, resnet18; transfer learning on cached features: "
    "efficientnet_lite0_tl (…lite1_tl, …lite2_tl) or resnet50_tl (needs --weights); "
    "fine-tuning the top stages on cached maps of the others: efficientnet_lite0_top; "
    "fine-tuning end to end: efficientnet_lite0_ft (…lite1_ft, …lite2_ft), resnet50_ft"
)


def _option(help_text: str, *names: str, **checks):
    return typer.Option(*names, help=help_text, **checks)


def _finite(help_text: str, *names: str, **bounds: float):
    return options.finite(*names, help=help_text, **bounds)


# The train command's options: None leaves the value to --config, then to the default.
Data = Annotated[
    Path | None,
    typer.Argument(
        help="Training set: a folder per class, or a ParticleTrieur project .xml.", exists=True
    ),
]
IncludePredictions = Annotated[
    bool | None,
    _option(
        "ParticleTrieur project: also train on the images its network classified (tagged "
        "auto); default: only on those a person labelled.",
        "--include-predictions/--no-include-predictions",
    ),
]
Out = Annotated[Path | None, _option("Run folder to create.", "--out", "-o")]
Model = Annotated[str | None, _option(f"Network (default: auto); {_MODEL_HELP}.")]
InputSize = Annotated[
    int | None,
    _option(
        "Input width in pixels (default: the model's; 128 for base_cyclic, 160 for the top).",
        min=16,
    ),
]
Filters = Annotated[
    int | None, _option("Filters in the first block (default: 8).", **options.COUNT)
]
Colour = Annotated[
    bool | None,
    _option(
        "Colour (3 channels) or greyscale input (default: grey; auto: colour when the "
        "images carry it).",
        "--colour/--grey",
    ),
]
Pool = Annotated[Literal["max", "mean"] | None, _option("Cyclic pool: max (paper) or mean (MISO).")]
Epochs = Annotated[
    int | None,
    _option("Train a fixed number of epochs instead of the automatic ALRS schedule.", min=1),
]
AlrsWindow = Annotated[
    int | None,
    _option("ALRS window L in epochs (default: 40 under 5 000 images, 10 above 10 000).", min=1),
]
AlrsDrops = Annotated[int | None, _option("ALRS: stop after this many drops (default: 4).", min=1)]
MaxEpochs = Annotated[int | None, _option("ALRS: upper limit on epochs (default: 300).", min=1)]
BatchSize = Annotated[int | None, _option("Batch size (default: 64).", **options.COUNT)]
LearningRate = Annotated[
    float | None, _finite("Adam learning rate (default: 0.001).", "--lr", gt=0)
]
MinPerClass = Annotated[
    int | None,
    _option(
        "Drop classes with fewer images (default: the model's; 40 for the paper's networks, "
        "10 for transfer and fine-tuning; auto keeps three quarters of the classes).",
        min=1,
    ),
]
Optimizer = Annotated[
    Literal["adam", "adamw"] | None,
    _option("adam (the paper's) or adamw (default: the model's)."),
]
WeightDecay = Annotated[float | None, _finite("AdamW's weight decay (default: 0.05).", ge=0)]
Schedule = Annotated[
    Literal["alrs", "cosine"] | None,
    _option("alrs (the paper's) or cosine: warm-up, then cosine over --epochs (default: "
            "the model's)."),
]  # fmt: skip
WarmupEpochs = Annotated[float | None, _finite("cosine: epochs of warm-up (default: 1).", ge=0)]
LabelSmoothing = Annotated[
    float | None, _finite("Label smoothing (default: the model's).", ge=0, lt=1)
]
Mixup = Annotated[float | None, _finite("Mixup Beta parameter, e.g. 0.2 (default: off).", ge=0)]
Cutmix = Annotated[float | None, _finite("Cutmix Beta parameter, e.g. 1.0 (default: off).", ge=0)]
Ema = Annotated[
    float | None,
    _finite("Keep a moving average of the weights with this decay, e.g. 0.999 (default: "
            "the model's; 0 = off).", ge=0, lt=1),
]  # fmt: skip
Patience = Annotated[
    int | None,
    _option("Stop after this many epochs without a better validation accuracy.", min=1),
]
Flips = Annotated[
    bool | None,
    _option(
        "Mirror images in augmentation; transfer and top models also answer from the "
        "mirror image's views, invariant to reflection (default: off, as coiling direction "
        "tells taxa apart).",
        "--flips/--no-flips",
    ),
]
ValFraction = Annotated[float | None, _finite("Validation share (default: 0.2).", gt=0, lt=1)]
ClassWeights = Annotated[
    Literal["clamped", "none"] | None,
    _option(
        "Loss weights: clamped (the paper's, favours rare classes) or none "
        "(favours overall accuracy) (default: the model's; clamped for the paper's networks "
        "and fine-tuning, none for transfer learning, measured better there on both counts)."
    ),
]
Augment = Annotated[bool | None, _option("Augmentation (default: on).", "--augment/--no-augment")]
Seed = Annotated[
    int | None,
    _option("Random seed for split, weights and batches (default: 0).", **options.SEED),
]
Device = Annotated[
    str | None,
    _option("auto, cpu, cuda or cuda:N (default: auto).", callback=options.Device().check),
]
Precision = Annotated[
    Literal["auto", "bf16", "fp32"] | None,
    _option(
        "auto, bf16 or fp32 (auto: on a CPU with bf16, the faster of the two in a few timed "
        "steps, kept per machine; on a GPU, bf16 where supported)."
    ),
]
Workers = Annotated[
    int | None, _option("Image-decoding processes (default: one per core).", **options.WORKERS)
]
MaxPixels = Annotated[
    int | None,
    _option(
        "Skip images of more pixels (width × height), refused before decoding "
        "(default: 50 million).",
        **options.COUNT,
    ),
]
Compile = Annotated[
    Literal["auto", "on", "off"] | None,
    _option(
        "torch.compile the training step: auto, on or off (auto: on a GPU for 5 000+ "
        "images; on a CPU the eager step is as fast, measured).",
        "--compile",
    ),
]
Cyclic = Annotated[
    bool | None,
    _option(
        "Transfer and fine-tuned models: cyclic slice/pool in the head; "
        "efficientnet_lite0_top: answer with the mean of the four 90° turns, or read the "
        "image once, about 3× faster (default: on).",
        "--cyclic/--no-cyclic",
    ),
]
Stages = Annotated[
    bool | None,
    _option(
        "Transfer models: pool the backbone's last four stages beside its last layer "
        "(default: on; more accurate at no extra cost).",
        "--stages/--no-stages",
    ),
]
Weights = Annotated[
    Path | None,
    _option(
        "Transfer models: backbone ImageNet weights (a torchvision state dict).",
        exists=True,
        dir_okay=False,
    ),
]
AugmentedCopies = Annotated[
    int | None,
    _option(
        "Transfer and top models: also cache vectors (maps) of N augmented copies of each "
        "training image (default: 0).",
        min=0,
    ),
]
FeatureCache = Annotated[
    Path | None,
    _option(
        "Transfer models: feature cache folder (default: ~/.cache/foramflow/features).",
        file_okay=False,
    ),
]
ConfigFile = Annotated[
    Path | None,
    _option(
        "YAML file of options; command-line options override it. Relative paths in it are "
        "relative to its folder.",
        "--config",
        "-c",
        exists=True,
        dir_okay=False,
    ),
]
Resume = Annotated[bool, typer.Option(help="Continue an interrupted run in --out.")]


def train(
    data: Data = None,
    include_predictions: IncludePredictions = None,
    out: Out = None,
    model: Model = None,
    input_size: InputSize = None,
    filters: Filters = None,
    colour: Colour = None,
    pool: Pool = None,
    epochs: Epochs = None,
    alrs_window: AlrsWindow = None,
    alrs_drops: AlrsDrops = None,
    max_epochs: MaxEpochs = None,
    batch_size: BatchSize = None,
    learning_rate: LearningRate = None,
    min_per_class: MinPerClass = None,
    optimizer: Optimizer = None,
    weight_decay: WeightDecay = None,
    schedule: Schedule = None,
    warmup_epochs: WarmupEpochs = None,
    label_smoothing: LabelSmoothing = None,
    mixup: Mixup = None,
    cutmix: Cutmix = None,
    ema: Ema = None,
    patience: Patience = None,
    flips: Flips = None,
    val_fraction: ValFraction = None,
    class_weights: ClassWeights = None,
    augment: Augment = None,
    seed: Seed = None,
    device: Device = None,
    precision: Precision = None,
    workers: Workers = None,
    max_pixels: MaxPixels = None,
    compile_network: Compile = None,
    cyclic: Cyclic = None,
    stages: Stages = None,
    weights: Weights = None,
    augmented_copies: AugmentedCopies = None,
    feature_cache: FeatureCache = None,
    config: ConfigFile = None,
    resume: Resume = False,
) -> None:
    """Train a rotation-invariant CNN, evaluate it, and export a model bundle.

    Writes a run folder with config.yaml, log.csv, checkpoints, bundle/ and
    evaluation/report.html. The bundle's probabilities are calibrated (temperature scaling)
    on the validation split; foramflow calibrate refits them on other labelled images.

    Example: foramflow train forams/ --out runs/first   (the model chosen for the set)

    Example: foramflow train forams/ --model base_cyclic --out runs/bc   (the paper's network)

    Example: foramflow train forams/ --model efficientnet_lite0_tl --out runs/tl   (transfer
    learning, minutes on a CPU)

    Example: foramflow train forams/ --model efficientnet_lite0_top --out runs/top   (the top
    of the backbone fine-tuned: more accurate, tens of minutes on a CPU)

    Example: foramflow train --config runs/bc/config.yaml --out runs/bc2 --seed 1   (a run
    again, with another seed; the file's relative paths are taken from its folder)
    """
    options = _config_options(locals())  # first, while the locals are the options alone
    from foramflow.training.step import train as train_step

    resolved = _resolve_config(config, options)
    prepare_output_dir(resolved.out)
    try:
        result = train_step(
            resolved.data,
            resolved.out,
            config=resolved,
            resume=resume,
            progress=RichProgress(console),
        )
    except KeyboardInterrupt:
        if (Path(resolved.out) / "checkpoint_last.pt").is_file():
            console.print(
                f"continue with: foramflow train --config {Path(resolved.out) / 'config.yaml'} "
                "--resume"
            )
        raise typer.Exit(130) from None
    console.print(f"[green]Done.[/] Bundle: {result.bundle}")
    if result.fast_bundle:
        fast = result.metrics["one_view"]
        typer.echo(
            f"Faster bundle: {result.fast_bundle} (reads each image once: validation accuracy "
            f"{fast['accuracy']:.1%} against {result.metrics['accuracy']:.1%}, "
            f"{fast['inference_ms_per_image']:.1f} against "
            f"{_ms_per_image(result.bundle):.1f} ms per image)"
        )
    typer.echo(f"Report: {result.report}")


def _ms_per_image(bundle: Path) -> float:
    from foramflow.bundle import Bundle

    return Bundle.load(bundle).meta.inference_ms_per_image


_RENAMED = {"alrs_window": "alrs_window_epochs", "compile_network": "compile"}
_AS_TEXT = ("data", "out", "weights", "feature_cache")


def _config_options(given: dict) -> dict:
    """TrainConfig fields from the command's options: some renamed, paths as text, the
    colour switch as a number of channels; None where the option was not given."""
    options = {
        _RENAMED.get(name, name): value
        for name, value in given.items()
        if name not in ("config", "resume", "colour")
    }
    for name in _AS_TEXT:
        options[name] = str(options[name]) if options[name] else None
    colour = given["colour"]
    options["channels"] = None if colour is None else (3 if colour else 1)
    return options


def _resolve_config(config_file: Path | None, options: dict):
    """The run's configuration: the YAML file's, overridden by the options given."""
    from foramflow.training.config import TrainConfig

    return TrainConfig.load(config_file, **options)


def evaluate(
    bundle: Path = typer.Argument(..., help="Model bundle folder or .zip.", exists=True),
    data: Path = typer.Argument(
        ..., help="Labelled images: a folder per class.", exists=True, file_okay=False
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder for the report and tables.", file_okay=False
    ),
    workers: int = typer.Option(
        0, help="Image-decoding processes (default: one per core).", **options.WORKERS
    ),
) -> None:
    """Evaluate a bundle on a labelled image set (for example an independent test set).

    Classes of the set that the bundle does not know are reported and left out. The
    inference time is that of the engine classify runs, in fp32.

    Example: foramflow evaluate runs/bc/bundle test_set/ --out runs/bc/test
    """
    from foramflow.evaluate.folder import evaluate_folder

    result = evaluate_folder(
        bundle, data, out, workers=workers or None, progress=RichProgress(console)
    )
    m = result.metrics
    typer.echo(f"accuracy {m['accuracy']:.4f}, mean F1 {m['macro_f1']:.4f}")
    typer.echo(f"inference {result.evaluation.inference_summary}")
    typer.echo(f"Report: {result.report}")


def export(
    run: Path = typer.Argument(
        ..., help="Run folder written by 'foramflow train'.", exists=True, file_okay=False
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle folder, or a .zip file to write."),
) -> None:
    """Re-export a run's best network as a model bundle (a folder, or one .zip to share).

    Example: foramflow export runs/bc --out bc_bundle.zip
    """
    from foramflow.training.rebuild import rebuild_bundle

    typer.echo(f"Bundle: {rebuild_bundle(run, out)}")


def predict(
    bundle: Path = typer.Argument(..., help="Model bundle folder or .zip.", exists=True),
    images: list[Path] = typer.Argument(..., help="Image files to classify."),
    threshold: float | None = typer.Option(
        None,
        help="Minimum top score, else 'unsure': in (0.5, 1.0], or 0 to switch the rule off "
        "(default: the bundle's, usually 0.8).",
        callback=options.Threshold().check,
    ),
) -> None:
    """Print the class and score of each image, using the bundle alone (ONNX Runtime).

    One tab-separated line per image: path, class (or 'unsure', or 'error'), score (or the
    reason). Control characters in a path or reason are written as escapes (\\n, \\t, \\x1b),
    so each image stays one line of three columns.

    Example: foramflow predict runs/bc/bundle particle_0001.png particle_0002.png
    """
    from foramflow.bundle import Bundle
    from foramflow.bundle.engine import Engine
    from foramflow.bundle.predict import predict_paths
    from foramflow.io.class_names import UNSURE

    loaded = Bundle.load(bundle)
    engine = Engine(loaded, precision="fp32")
    _print_notes(loaded)
    cut = loaded.threshold if threshold is None else threshold
    labels, failed = loaded.labels, 0
    for path, probs, error in predict_paths(engine, images):
        if error is not None:
            failed += 1
            typer.echo(tsv_row(path, "error", error))
            continue
        k = int(probs.argmax())
        sure = probs[k] > loaded.class_thresholds.get(labels[k], cut)
        typer.echo(tsv_row(path, labels[k] if sure else UNSURE, f"{probs[k]:.4f}"))
    if failed:
        console.print(f"[yellow]{failed} image(s) could not be read")
        raise typer.Exit(1)


def _print_notes(bundle) -> None:
    """Say which defaults a bundle takes for the fields its model.json leaves out."""
    for note in bundle.notes:
        console.print(f"[yellow]note:[/] {bundle.path}: {note}")
