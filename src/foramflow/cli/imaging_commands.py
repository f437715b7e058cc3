"""``foramflow stack`` and ``foramflow segment``: Z-stacks to fused images, trays to crops.

The steps and the files they write are :mod:`foramflow.imaging.steps`; these commands read
the options, run the step with progress bars, and print what it did. Both read whole trays,
so they decode images of up to 100 million pixels (``--max-pixels``), twice what the
commands that read crops accept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from foramflow.cli.console import RichProgress, console, fail

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
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Fused image file (planes given) or output folder (folder given)."
    ),
    plane_spacing_um: float | None = typer.Option(
        None, help="Distance between focal planes, µm; gives the depth map in µm."
    ),
    pattern: str = typer.Option(
        "*", help="Glob that selects plane files inside each stack folder, e.g. '*plane*'."
    ),
    align: bool = typer.Option(True, "--align/--no-align", help="Register planes that shift."),
    noise_factor: float = typer.Option(
        5.0, help="Focus contrast below this × the noise level is not trusted (no halos)."
    ),
    image_format: str = typer.Option(
        "png", "--format", help="Fused image format in folder mode: png or tif."
    ),
    max_pixels: MaxPixels = None,
) -> None:
    """Fuse Z-stacks into all-in-focus images, with a depth map and a sharpness score.

    One stack: foramflow stack obj1/plane*.tif --out obj1.png --plane-spacing-um 70

    Many: foramflow stack stacks/ --out fused/ --pattern '*plane*'
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
        ..., help="Tray images, or folders searched recursively (first subfolder = sample)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Crops folder (CROPS_DIR)."),
    pixels_per_mm: float = typer.Option(
        1159.4, help="Optical resolution, pixels per mm (the default is one microscope's)."
    ),
    threshold: str = typer.Option(
        "auto", help="'auto' (Otsu) or a level in [0, 1] of colour distance from background."
    ),
    background: Path | None = typer.Option(
        None, help="Image of the empty tray, for a per-pixel background model."
    ),
    min_area_um2: float = typer.Option(3000.0, help="Drop smaller regions (µm²)."),
    max_concavity: float | None = typer.Option(
        None, help="Drop regions with a deeper notch (relative to their radius)."
    ),
    touching_concavity: float = typer.Option(
        0.35, help="Flag regions with at least this concavity as touching particles."
    ),
    split: bool = typer.Option(False, "--split", help="Split touching particles (watershed)."),
    closing_px: int = typer.Option(3, help="Radius of the closing that bridges sutures, px."),
    opening_px: int = typer.Option(2, help="Radius of the opening that removes specks, px."),
    masks: Path | None = typer.Option(None, help="Also write a mask per crop under this folder."),
    image_format: str = typer.Option("png", "--format", help="Crop format: png, jpg or tif."),
    max_pixels: MaxPixels = None,
) -> None:
    """Cut tray images into one square crop per particle and measure every particle.

    foramflow segment trays/ --out crops/ --pixels-per-mm 1159.4

    Writes crops under CROPS_DIR (a folder per image, under its sample folder),
    morphometrics.parquet and .csv (one row per crop, in µm) and rejected.csv.
    """
    from foramflow.imaging.steps import segment_folder

    result = segment_folder(
        images,
        out,
        pixels_per_mm=pixels_per_mm,
        threshold=_parse_threshold(threshold),
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


def _parse_threshold(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        level = float(text)
    except ValueError:
        level = float("nan")
    if not 0.0 <= level <= 1.0:
        raise fail(
            f"--threshold must be 'auto' or a number in [0, 1], not {text!r} (a level of "
            "colour distance from the background: 1 is black on white)"
        )
    return level
