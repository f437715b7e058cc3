"""``foramflow stack`` and ``foramflow segment``: Z-stacks to fused images, trays to crops.

File conventions shared with the rest of the tool:

- ``stack`` writes, beside each fused image ``NAME.png``, ``NAME.depth-index.tif``
  (float32, fractional index of the sharpest plane), ``NAME.depth-um.tif`` (float32, µm,
  when the plane spacing is given) and ``NAME.stack.json`` (shifts, sharpness).
- ``segment`` writes crops to ``CROPS/<subfolders of the image under its root>/<image
  name>/<image name>_p<label>_x<col>_y<row>.png``: the first folder under CROPS is the
  sample, as ``classify`` and ``train`` expect. ``CROPS/morphometrics.parquet`` (and
  ``.csv``) has one row per crop; its ``path`` column is the crop path relative to CROPS,
  the key that ``classify`` writes into its predictions table. Regions that were dropped
  are listed, with the reason, in ``CROPS/rejected.csv``. A depth map
  ``NAME.depth-um.tif`` beside an image gives the particles' thickness.

Both read whole trays, so they decode images of up to 100 million pixels
(``--max-pixels``), twice what the commands that read crops accept.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import typer
from rich.markup import escape

from foramflow.cli.console import console, fail, progress_bar
from foramflow.io.files import prepare_output_dir

DEPTH_INDEX_SUFFIX = ".depth-index.tif"
DEPTH_UM_SUFFIX = ".depth-um.tif"


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _is_plain_image(path: Path) -> bool:
    """An image file that is not a depth map written by ``stack``."""
    from foramflow.io.images import is_image_file

    return is_image_file(path) and ".depth-" not in path.name


def _find_stacks(root: Path, pattern: str) -> list[Path]:
    """Folders under ``root`` (itself included) that hold at least two matching images."""
    folders = [root, *sorted(p for p in root.rglob("*") if p.is_dir())]
    return [
        folder
        for folder in folders
        if sum(_is_plain_image(p) for p in folder.glob(pattern) if p.is_file()) >= 2
    ]


_MAX_PIXELS_HELP = (
    "Refuse images of more pixels (width × height), before decoding them: a small "
    "compressed file can claim gigabytes (default: 400 million)."
)


def _tray_max_pixels(max_pixels: int | None) -> int:
    from foramflow.io.images import TRAY_MAX_PIXELS

    return TRAY_MAX_PIXELS if max_pixels is None else max_pixels


def _read_planes(paths: list[Path], max_pixels: int):
    import numpy as np

    from foramflow.io.images import ImageReadError, read_image

    planes = [read_image(paths[0], max_pixels=max_pixels)]
    for path in paths[1:]:
        plane = read_image(path, max_pixels=max_pixels)
        if plane.shape != planes[0].shape:
            raise ImageReadError(
                path, f"plane of shape {plane.shape} in a stack of shape {planes[0].shape}"
            )
        planes.append(plane)
    return np.stack(planes)


def _fuse_and_write(paths: list[Path], out: Path, options: dict, max_pixels: int) -> dict:
    import numpy as np
    import tifffile

    from foramflow.imaging.save import save_image
    from foramflow.imaging.stack import fuse_stack, sharpness

    planes = _read_planes(paths, max_pixels)
    result = fuse_stack(planes, **options)
    save_image(out, result["image"])
    stem = out.with_suffix("")
    tifffile.imwrite(f"{stem}{DEPTH_INDEX_SUFFIX}", result["depth_index"])
    if result["depth_um"] is not None:
        tifffile.imwrite(f"{stem}{DEPTH_UM_SUFFIX}", result["depth_um"])
    plane_sharpness = [sharpness(plane) for plane in planes]
    report = {
        "fused": str(out),
        "planes": [str(p) for p in paths],
        "plane_spacing_um": options["plane_spacing_um"],
        "sharpness": result["sharpness"],
        "sharpest_plane": int(np.argmax(plane_sharpness)),
        "sharpest_plane_sharpness": max(plane_sharpness),
        "max_shift_px": float(np.abs(result["shifts"]).max()),
        "shifts_px": np.round(result["shifts"], 2).tolist(),
        "depth_index_range": [
            float(result["depth_index"].min()),
            float(result["depth_index"].max()),
        ],
    }
    Path(f"{stem}.stack.json").write_text(json.dumps(report, indent=2))
    return report


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
    max_pixels: int | None = typer.Option(None, min=1, help=_MAX_PIXELS_HELP),
) -> None:
    """Fuse Z-stacks into all-in-focus images, with a depth map and a sharpness score.

    One stack: foramflow stack obj1/plane*.tif --out obj1.png --plane-spacing-um 70

    Many: foramflow stack stacks/ --out fused/ --pattern '*plane*'
    """
    from foramflow.io.images import ImageReadError

    options = {"align": align, "noise_factor": noise_factor, "plane_spacing_um": plane_spacing_um}
    max_pixels = _tray_max_pixels(max_pixels)
    if len(planes) == 1 and planes[0].is_dir():
        root = planes[0]
        jobs = []
        for folder in _find_stacks(root, pattern):
            files = sorted(
                (p for p in folder.glob(pattern) if p.is_file() and _is_plain_image(p)),
                key=_natural_key,
            )
            relative = folder.relative_to(root)
            name = relative if relative.parts else Path(root.name)
            jobs.append((files, out / name.with_suffix(f".{image_format}")))
        if not jobs:
            raise fail(f"{root}: no folder with two or more images matching {pattern!r}")
        prepare_output_dir(out)
    else:
        missing = [p for p in planes if not p.is_file()]
        if missing:
            raise fail(f"{missing[0]}: not a file (give plane files, or one folder of stacks)")
        if len(planes) < 2:
            raise fail(f"{planes[0]}: a stack needs at least two planes")
        jobs = [(sorted(planes, key=_natural_key), out)]
        prepare_output_dir(out.parent)

    reports, failures = [], []
    with progress_bar() as progress:
        task = progress.add_task("stacking", total=len(jobs))
        for files, target in jobs:
            try:
                reports.append(_fuse_and_write(files, target, options, max_pixels))
            except (ImageReadError, ValueError) as err:
                failures.append(f"{files[0].parent}: {err}")
            progress.advance(task)

    if len(jobs) > 1:
        import pandas as pd

        summary = pd.DataFrame(reports).drop(columns=["planes", "shifts_px"], errors="ignore")
        summary.to_csv(out / "stacks.csv", index=False)
    for report in reports:
        console.print(
            f"{report['fused']}: {len(report['planes'])} planes, sharpness "
            f"{report['sharpness']:.3g} (sharpest plane {report['sharpest_plane']}: "
            f"{report['sharpest_plane_sharpness']:.3g}), max shift {report['max_shift_px']:.1f} px"
        )
    for failure in failures:
        console.print(f"[bold red]failed:[/] {failure}")
    if failures and not reports:
        raise typer.Exit(1)


def _find_images(sources: list[Path]) -> tuple[list[tuple[Path, Path]], dict[Path, str]]:
    """(image, root) pairs, a folder being searched recursively and its images' root; and
    ``{entry: reason}`` for entries named like images that cannot be read as files."""
    from foramflow.io.images import image_file_problem

    found, skipped = [], {}
    for source in sources:
        if source.is_dir():
            entries = sorted(p for p in source.rglob("*") if _is_plain_image(p) and not p.is_dir())
            pairs = [(entry, source) for entry in entries]
        else:
            pairs = [(source, source.parent)]
        for image, root in pairs:
            problem = image_file_problem(image)
            if problem is None:
                found.append((image, root))
            else:
                skipped[image] = problem
    return found, skipped


def _segment_one(
    image_path: Path, root: Path, crops_dir: Path, options: dict, writing: dict, max_pixels: int
):
    import numpy as np

    from foramflow.imaging.save import save_image
    from foramflow.imaging.segment import crop_filename, crop_square, segment_image
    from foramflow.io.images import ImageReadError, read_image, read_tiff_page

    image = read_image(image_path, max_pixels=max_pixels)
    depth_path = image_path.with_suffix(DEPTH_UM_SUFFIX)
    depth = None
    if depth_path.is_file():
        depth = read_tiff_page(depth_path, max_pixels=max_pixels)
        if depth.shape != image.shape[:2]:
            raise ImageReadError(depth_path, f"depth map {depth.shape} for image {image.shape}")
    try:
        result = segment_image(image, depth_um=depth, **options)
    except ValueError as err:
        raise ImageReadError(image_path, str(err)) from err

    folder = image_path.parent.relative_to(root) / image_path.stem
    particles = result["particles"]
    paths = []
    for _, particle in particles.iterrows():
        relative = folder / crop_filename(image_path.stem, particle, suffix=writing["suffix"])
        top, left, side = (
            int(particle[k]) for k in ("crop_top_px", "crop_left_px", "crop_side_px")
        )
        crop = crop_square(image, top, left, side, fill=result["background_colour"])
        save_image(crops_dir / relative, crop)
        if writing["masks"] is not None:
            mask = crop_square(result["labels"] == particle["label"], top, left, side, fill=False)
            save_image((writing["masks"] / relative).with_suffix(".png"), mask.astype(np.float32))
        paths.append(relative.as_posix())
    particles.insert(0, "path", paths)
    particles.insert(1, "abs_path", [str((crops_dir / p).resolve()) for p in paths])
    particles.insert(2, "sample", [Path(p).parts[0] for p in paths])
    particles.insert(3, "source", str(image_path))
    particles["pixels_per_mm"] = options["pixels_per_mm"]
    particles["threshold"] = result["threshold"]
    rejected = result["rejected"]
    rejected.insert(0, "source", str(image_path))
    return particles, rejected


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
    max_pixels: int | None = typer.Option(None, min=1, help=_MAX_PIXELS_HELP),
) -> None:
    """Cut tray images into one square crop per particle and measure every particle.

    foramflow segment trays/ --out crops/ --pixels-per-mm 1159.4

    Writes crops under CROPS_DIR (a folder per image, under its sample folder),
    morphometrics.parquet and .csv (one row per crop, in µm) and rejected.csv.
    """
    import pandas as pd

    from foramflow.io.images import ImageReadError, printable_path, read_image

    threshold_value = _parse_threshold(threshold)
    max_pixels = _tray_max_pixels(max_pixels)
    if image_format not in ("png", "jpg", "tif"):
        raise fail(f"--format must be png, jpg or tif, not {image_format!r}")
    empty_tray = None
    if background is not None:
        try:
            empty_tray = read_image(background, max_pixels=max_pixels)
        except ImageReadError as err:
            raise fail(str(err)) from None
    missing = [p for p in images if not p.exists()]
    if missing:
        raise fail(f"{missing[0]}: no such file or folder")
    found, skipped = _find_images(images)
    for path, reason in skipped.items():
        console.print(f"[yellow]skipped:[/] {escape(printable_path(path))}: {reason}")
    if not found:
        raise fail("no images found in " + ", ".join(str(p) for p in images))

    options = {
        "pixels_per_mm": pixels_per_mm,
        "threshold": threshold_value,
        "background": empty_tray,
        "min_area_um2": min_area_um2,
        "max_concavity": max_concavity,
        "touching_concavity": touching_concavity,
        "split": split,
        "closing_px": closing_px,
        "opening_px": opening_px,
    }
    writing = {"suffix": f".{image_format}", "masks": masks}
    prepare_output_dir(out)
    tables, rejected_tables, failures = [], [], []
    with progress_bar() as progress:
        task = progress.add_task("segmenting", total=len(found))
        for image_path, root in found:
            try:
                particles, rejected = _segment_one(
                    image_path, root, out, options, writing, max_pixels
                )
                tables.append(particles)
                rejected_tables.append(rejected)
                console.print(
                    f"{image_path}: {len(particles)} particles "
                    f"({int(particles['touching'].sum())} touching), {len(rejected)} dropped"
                )
            except ImageReadError as err:
                failures.append(str(err))
            progress.advance(task)

    if not tables:
        for failure in failures:
            console.print(f"[bold red]failed:[/] {escape(failure)}")
        raise typer.Exit(1)
    out.mkdir(parents=True, exist_ok=True)
    table = pd.concat(tables, ignore_index=True)
    table.to_parquet(out / "morphometrics.parquet", index=False)
    table.to_csv(out / "morphometrics.csv", index=False)
    rejected = pd.concat(rejected_tables, ignore_index=True)
    rejected.to_csv(out / "rejected.csv", index=False)
    reasons = rejected["reason"].value_counts().to_dict()
    console.print(
        f"{len(table)} crops from {len(tables)} images in {out}; dropped: "
        + (", ".join(f"{n} {reason}" for reason, n in reasons.items()) or "none")
    )
    hint = _too_small_hint(tables, rejected_tables, pixels_per_mm, min_area_um2)
    if hint:
        console.print(f"[yellow]hint:[/] {hint}")
    for failure in failures:
        console.print(f"[bold red]failed:[/] {escape(failure)}")


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


def _too_small_hint(tables, rejected_tables, pixels_per_mm: float, min_area_um2: float):
    """What to set when the size rule dropped every region of some images: most often a
    photograph with another scale than the one assumed."""
    import pandas as pd

    emptied = [
        rejected[rejected["reason"] == "too_small"]
        for particles, rejected in zip(tables, rejected_tables, strict=True)
        if particles.empty and (rejected["reason"] == "too_small").any()
    ]
    if not emptied:
        return None
    areas_um2 = pd.concat(emptied)["area_um2"]
    areas_px = areas_um2 * (pixels_per_mm / 1000.0) ** 2
    return (
        f"in {len(emptied)} image(s) every region was dropped as smaller than "
        f"{min_area_um2:g} µm² at {pixels_per_mm:g} pixels per mm; the {len(areas_um2)} "
        f"regions found measure {areas_um2.min():.3g} to {areas_um2.max():.3g} µm² "
        f"({areas_px.min():,.0f} to {areas_px.max():,.0f} pixels). If the images have "
        "another scale, give it with --pixels-per-mm; or lower --min-area-um2."
    )
