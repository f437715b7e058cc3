"""``foramflow synth …``: write synthetic foraminifera data sets with known truth to disk."""

from __future__ import annotations

from pathlib import Path

import typer

import foramflow.cli.options as options
from foramflow.cli.console import console, progress_bar

app = typer.Typer(
    name="synth",
    help="Generate synthetic foraminifera (crops, tray slides, Z-stacks, a whole core) "
    "with known truth, to try the workflow or test it.",
    no_args_is_help=True,
)

_CLASSES_HELP = (
    "Comma-separated classes (default: all of trochospiral, planispiral, biserial, "
    "uniserial, spherical, fragment, double)."
)


def _classes(text: str | None) -> list[str] | None:
    """The comma-separated morphotypes, each one known."""
    if text is None:
        return None
    from foramflow.data.synthetic import MORPHOTYPES

    names = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in names if c not in MORPHOTYPES]
    if unknown or not names:
        raise typer.BadParameter(
            f"unknown classes {unknown or text!r}; choose from {', '.join(MORPHOTYPES)}"
        )
    return names


def _classes_option():
    return typer.Option(None, help=_CLASSES_HELP, callback=_classes)


@app.command("training-set")
def training_set(
    out_dir: Path = typer.Argument(
        ..., help="Folder to write (one subfolder per class).", file_okay=False
    ),
    per_class: int = typer.Option(200, "--per-class", "-n", min=1, help="Images per class."),
    classes: str | None = _classes_option(),
    image_size: int = typer.Option(128, min=16, help="Side of each square crop (pixels)."),
    colour: bool = typer.Option(False, "--colour", help="RGB instead of grey."),
    seed: int = typer.Option(
        0, help="Random seed: the same seed gives the same set.", **options.SEED
    ),
) -> None:
    """Write a labelled training set: 8-bit PNG crops in one folder per class, plus truth.csv.

    Example: foramflow synth training-set train --per-class 200
    """
    from foramflow.data.synthetic import MORPHOTYPES, write_training_set

    names = classes
    total = per_class * len(names or MORPHOTYPES)
    with progress_bar() as bar:
        task = bar.add_task("rendering crops", total=total)
        truth = write_training_set(
            out_dir,
            n_per_class=per_class,
            classes=names,
            image_size=image_size,
            colour=colour,
            seed=seed,
            on_progress=lambda n: bar.advance(task, n),
        )
    console.print(f"wrote {len(truth)} images in {truth['class'].nunique()} classes to {out_dir}")


@app.command("core")
def core(
    out_dir: Path = typer.Argument(..., help="Folder to write the core into.", file_okay=False),
    samples: int = typer.Option(12, "--samples", min=1, help="Samples down the core."),
    per_sample: int = typer.Option(100, "--per-sample", min=1, help="Particles per sample."),
    slides: bool = typer.Option(
        False, "--slides", help="Write tray images to segment instead of ready crops."
    ),
    classes: str | None = _classes_option(),
    image_size: int = typer.Option(128, min=16, help="Crop side (pixels), without --slides."),
    pixel_size_um: float = options.finite(
        "--pixel-size-um", default=5.0, help="Tray image resolution (µm per pixel).", ge=0.1
    ),
    human_count: int = typer.Option(300, min=1, help="Specimens per simulated human count."),
    colour: bool = typer.Option(False, "--colour", help="RGB instead of grey."),
    seed: int = typer.Option(0, help="Random seed.", **options.SEED),
) -> None:
    """Write a synthetic core: per-sample image folders and the truth tables.

    samples/<sample>/: crops, or slide_NN.png tray images with --slides.
    truth_abundance.csv: the true proportions of each class per sample.
    human_counts.csv: 300-specimen counts drawn from those proportions.
    truth_particles.csv: every particle's class (and position on its slide).

    Example: foramflow synth core core --samples 12 --per-sample 200 --slides
    """
    from foramflow.data.synthetic import make_core

    names = classes
    with progress_bar() as bar:
        task = bar.add_task("rendering core", total=samples * per_sample)
        truth = make_core(
            out_dir,
            n_samples=samples,
            particles_per_sample=per_sample,
            classes=names,
            as_slides=slides,
            image_size=image_size,
            pixel_size_um=pixel_size_um,
            human_count=human_count,
            colour=colour,
            seed=seed,
            on_progress=lambda n: bar.advance(task, n),
        )
    console.print(
        f"wrote {len(truth.abundance)} samples, {len(truth.particles)} particles to {out_dir}"
    )


@app.command("slide")
def slide(
    out_dir: Path = typer.Argument(..., help="Folder to write into.", file_okay=False),
    particles: int = typer.Option(40, "--particles", "-n", min=1, help="Particles on the tray."),
    classes: str | None = _classes_option(),
    pixel_size_um: float = options.finite(
        "--pixel-size-um", default=5.0, help="Resolution (µm per pixel).", ge=0.1
    ),
    colour: bool = typer.Option(False, "--colour", help="RGB instead of grey."),
    seed: int = typer.Option(0, help="Random seed.", **options.SEED),
) -> None:
    """Write one tray image, its 16-bit label image and its particle table.

    Example: foramflow synth slide tray --particles 60
    """
    from foramflow.data.synthetic import make_slide, save_slide

    result = make_slide(
        n_particles=particles,
        classes=classes,
        pixel_size_um=pixel_size_um,
        colour=colour,
        seed=seed,
    )
    paths = save_slide(result, out_dir)
    console.print(f"wrote {', '.join(p.name for p in paths)} to {out_dir}")


@app.command("zstack")
def zstack(
    out_dir: Path = typer.Argument(..., help="Folder to write into.", file_okay=False),
    particles: int = typer.Option(8, "--particles", "-n", min=1, help="Particles in the scene."),
    classes: str | None = _classes_option(),
    plane_spacing_um: float = options.finite(default=70.0, help="Focal step (µm).", ge=1.0),
    depth_of_field_um: float = options.finite(default=90.0, help="Depth of field (µm).", ge=0),
    pixel_size_um: float = options.finite(
        "--pixel-size-um", default=5.0, help="Resolution (µm per pixel).", ge=0.1
    ),
    colour: bool = typer.Option(False, "--colour", help="RGB instead of grey."),
    seed: int = typer.Option(0, help="Random seed.", **options.SEED),
) -> None:
    """Write a Z-stack: plane_NN.png, the sharp image, the true depth map and tables.

    depth_um.tif: each pixel's height above the tray (µm), where it is in focus.
    planes.csv: each plane's focal position (µm).

    Example: foramflow synth zstack stack --particles 6
    """
    from foramflow.data.synthetic import make_zstack, save_zstack

    stack = make_zstack(
        n_particles=particles,
        classes=classes,
        plane_spacing_um=plane_spacing_um,
        depth_of_field_um=depth_of_field_um,
        pixel_size_um=pixel_size_um,
        colour=colour,
        seed=seed,
    )
    save_zstack(stack, out_dir)
    console.print(
        f"wrote {len(stack.planes)} planes, {stack.plane_spacing_um:g} µm apart, to {out_dir}"
    )
