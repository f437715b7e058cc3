"""``foramflow stack`` and ``foramflow segment``: Z-stacks to fused images, trays to crops.

The steps and the files they write are :mod:`foramflow.imaging.steps`; these commands read
the options, run the step with progress bars, and print what it did. Both read whole trays,
so they decode images of up to 100 million pixels (``--max-pixels``), twice what the
commands that read crops accept.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape

import foramflow.cli.options as options
from foramflow.cli.console import RichProgress, console
from foramflow.imaging.scale import DEFAULT_PIXELS_PER_MM


def _parse_threshold(text: str) -> float | str:
    """'auto', or a level of colour distance from the background in [0, 1]."""
    if text == "auto":
        return text
    if re.fullmatch(r"(\d+\.?\d*|\.\d+)(e[-+]?\d+)?", text.strip().lower()):
        level = float(text)
        if level <= 1.0:
            return level
    raise typer.BadParameter(
        f"must be 'auto' or a number in [0, 1], not {text!r} (a level of colour distance "
        "from the background: 1 is black on white)"
    )


MaxPixels = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Refuse images of more pixels (width × height), before decoding them: a small "
        "compressed file can claim gigabytes (default: 100 million).",
    ),
]


def stack(
    planes: list[Path] = typer.Argument(
        ...,
        help="The focal planes of one stack (in focus order; sorted by name), or one folder: "
        "every folder under it holding two or more images is a stack.",
        exists=True,
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Fused image file (planes given) or output folder (folder given)."
    ),
    plane_spacing_um: float | None = options.finite(
        default=None, help="Distance between focal planes, µm; gives the depth map in µm.", gt=0
    ),
    pattern: str = typer.Option(
        "*", help="Glob that selects plane files inside each stack folder, e.g. '*plane*'."
    ),
    align: bool = typer.Option(True, "--align/--no-align", help="Register planes that shift."),
    noise_factor: float = options.finite(
        default=5.0,
        help="Focus contrast below this × the noise level is not trusted (no halos).",
        ge=0,
    ),
    image_format: Literal["png", "tif"] = typer.Option(
        "png", "--format", help="Fused image format in folder mode: png or tif."
    ),
    max_pixels: MaxPixels = None,
) -> None:
    """Fuse Z-stacks into all-in-focus images, with a depth map and a sharpness score.

    Example: foramflow stack obj1/plane*.tif --out obj1.png --plane-spacing-um 70   (one stack)

    Example: foramflow stack stacks/ --out fused/ --pattern '*plane*'   (a folder of stacks)
    """
    from foramflow.imaging.steps import stack_folder, stack_planes

    options = {
        "plane_spacing_um": plane_spacing_um,
        "align": align,
        "noise_factor": noise_factor,
        "max_pixels": max_pixels,
        "progress": RichProgress(console),
    }
    if len(planes) == 1 and planes[0].is_dir():
        result = stack_folder(planes[0], out, pattern=pattern, image_format=image_format, **options)
    else:
        result = stack_planes(planes, out, **options)
    for report in result.fused:
        console.print(
            f"{report['fused']}: {len(report['planes'])} planes, sharpness "
            f"{report['sharpness']:.3g} (sharpest plane {report['sharpest_plane']}: "
            f"{report['sharpest_plane_sharpness']:.3g}), max shift {report['max_shift_px']:.1f} px"
        )
    for folder, reason in result.failed.items():
        console.print(f"[bold red]failed:[/] {escape(f'{folder}: {reason}')}")
    if result.failed and not result.fused:
        raise typer.Exit(1)


def segment(
    images: list[Path] = typer.Argument(
        ...,
        help="Tray images, or folders searched recursively (first subfolder = sample).",
        exists=True,
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Crops folder (CROPS_DIR)."),
    pixels_per_mm: float = options.finite(
        default=DEFAULT_PIXELS_PER_MM,
        help="Optical resolution, pixels per mm (the default is one microscope's).",
        gt=0,
    ),
    threshold: str = typer.Option(
        "auto",
        help="'auto' (Otsu) or a level in [0, 1] of colour distance from background.",
        callback=_parse_threshold,
    ),
    background: Path | None = typer.Option(
        None,
        help="Image of the empty tray, for a per-pixel background model.",
        exists=True,
        dir_okay=False,
    ),
    min_area_um2: float = options.finite(default=3000.0, help="Drop smaller regions (µm²).", ge=0),
    max_concavity: float | None = options.finite(
        default=None, help="Drop regions with a deeper notch (relative to their radius).", ge=0
    ),
    touching_concavity: float = options.finite(
        default=0.35, help="Flag regions with at least this concavity as touching particles.", ge=0
    ),
    split: bool = typer.Option(False, "--split", help="Split touching particles (watershed)."),
    closing_px: int = typer.Option(
        3, help="Radius of the closing that bridges sutures, px.", min=0
    ),
    opening_px: int = typer.Option(2, help="Radius of the opening that removes specks, px.", min=0),
    masks: Path | None = typer.Option(
        None, help="Also write a mask per crop under this folder.", file_okay=False
    ),
    image_format: Literal["png", "jpg", "tif"] = typer.Option(
        "png", "--format", help="Crop format: png, jpg or tif."
    ),
    max_pixels: MaxPixels = None,
) -> None:
    """Cut tray images into one square crop per particle and measure every particle.

    Writes crops under CROPS_DIR (a folder per image, under its sample folder),
    morphometrics.parquet and .csv (one row per crop, in µm) and rejected.csv.

    Example: foramflow segment trays/ --out crops/ --pixels-per-mm 1159.4
    """
    from foramflow.imaging.steps import segment_folder

    result = segment_folder(
        images,
        out,
        pixels_per_mm=pixels_per_mm,
        threshold=threshold,
        background=background,
        min_area_um2=min_area_um2,
        max_concavity=max_concavity,
        touching_concavity=touching_concavity,
        split=split,
        closing_px=closing_px,
        opening_px=opening_px,
        masks=masks,
        image_format=image_format,
        max_pixels=max_pixels,
        progress=RichProgress(console),
    )
    if result.segmented:
        _print_segment_summary(result)
    for reason in result.failed.values():
        console.print(f"[bold red]failed:[/] {escape(reason)}")
    if not result.segmented:
        raise typer.Exit(1)


def _print_segment_summary(result) -> None:
    reasons = result.rejected["reason"].value_counts().to_dict()
    console.print(
        f"{len(result.particles)} crops from {len(result.segmented)} images in {result.out}; "
        "dropped: " + (", ".join(f"{n} {reason}" for reason, n in reasons.items()) or "none")
    )
    if result.all_too_small is not None:
        console.print(
            f"[yellow]hint:[/] {escape(result.all_too_small.describe())}. If the images have "
            "another scale, give it with --pixels-per-mm; or lower --min-area-um2."
        )
