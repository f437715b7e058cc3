"""The imaging steps of the method on folders: Z-stacks to fused images, trays to crops.

:func:`stack_folder` (and :func:`stack_planes` for one stack) fuse focal planes;
:func:`segment_folder` cuts tray images into one crop per particle and measures them. They
are what ``foramflow stack`` and ``foramflow segment`` run, and they write the same files:

- beside each fused image ``NAME.png``: ``NAME.depth-index.tif`` (float32, fractional index
  of the sharpest plane), ``NAME.depth-um.tif`` (float32, µm, when the plane spacing is
  given) and ``NAME.stack.json`` (shifts, sharpness);
- crops under ``OUT/<subfolders of the image under its root>/<image name>/<image
  name>_p<label>_x<col>_y<row>.png``: the first folder under OUT is the sample, as
  classification and training expect. ``OUT/morphometrics.parquet`` (and ``.csv``) has one
  row per crop; its ``path`` column is the crop path relative to OUT, the key that
  classification writes into its predictions table. Regions that were dropped are listed,
  with the reason, in ``OUT/rejected.csv``. A depth map ``NAME.depth-um.tif`` beside an
  image gives the particles' thickness.

Both read whole trays, so they decode images of up to 100 million pixels
(:data:`foramflow.io.images.TRAY_MAX_PIXELS`), twice what the steps that read crops accept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from foramflow.errors import ForamflowError
from foramflow.imaging.scale import DEFAULT_PIXELS_PER_MM
from foramflow.io.files import prepare_output_dir
from foramflow.io.images import ImageReadError, printable_path
from foramflow.progress import Progress, Quiet

DEPTH_INDEX_SUFFIX = ".depth-index.tif"
DEPTH_UM_SUFFIX = ".depth-um.tif"
MORPHOMETRICS_FILE = "morphometrics.parquet"
REJECTED_FILE = "rejected.csv"
STACK_SUMMARY_FILE = "stacks.csv"
CROP_FORMATS = ("png", "jpg", "tif")


class ImagingInputError(ForamflowError, ValueError):
    """Images or settings that a stacking or segmentation run cannot start from."""


# -- stacking -------------------------------------------------------------------------------


@dataclass
class FusedStack:
    """One fused stack: the all-in-focus image, its depth maps, and its ``.stack.json``."""

    image: np.ndarray
    depth_index: np.ndarray
    depth_um: np.ndarray | None
    report: dict


@dataclass
class StackResult:
    """What a stacking run wrote, and the stacks it could not fuse."""

    fused: list[dict]  # the .stack.json report of each fused stack
    failed: dict[Path, str] = field(default_factory=dict)  # stack folder: why, naming the file
    summary: Path | None = None  # stacks.csv, one row per fused stack (folder mode)


def fuse_planes(
    planes: np.ndarray,
    out: str | Path,
    *,
    plane_spacing_um: float | None = None,
    align: bool = True,
    noise_factor: float = 5.0,
    sources: Sequence[str | Path] = (),
) -> FusedStack:
    """Fuse one stack of planes (Z, H, W[, 3]) and write the fused image ``out`` with its
    depth maps and report beside it; ``sources`` names the plane files in the report."""
    import tifffile

    from foramflow.imaging.save import save_image
    from foramflow.imaging.stack import fuse_stack, sharpness

    out = Path(out)
    result = fuse_stack(
        planes, align=align, noise_factor=noise_factor, plane_spacing_um=plane_spacing_um
    )
    save_image(out, result["image"])
    stem = out.with_suffix("")
    tifffile.imwrite(f"{stem}{DEPTH_INDEX_SUFFIX}", result["depth_index"])
    if result["depth_um"] is not None:
        tifffile.imwrite(f"{stem}{DEPTH_UM_SUFFIX}", result["depth_um"])
    plane_sharpness = [sharpness(plane) for plane in planes]
    report = {
        "fused": str(out),
        "planes": [str(p) for p in sources],
        "plane_spacing_um": plane_spacing_um,
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
    return FusedStack(result["image"], result["depth_index"], result["depth_um"], report)


def stack_planes(
    planes: Sequence[str | Path],
    out: str | Path,
    *,
    plane_spacing_um: float | None = None,
    align: bool = True,
    noise_factor: float = 5.0,
    max_pixels: int | None = None,
    progress: Progress | None = None,
) -> StackResult:
    """Fuse the focal planes of one stack (sorted by name) into the image file ``out``."""
    planes = [Path(p) for p in planes]
    missing = [p for p in planes if not p.is_file()]
    if missing:
        raise ImagingInputError(
            f"{missing[0]}: not a file (give plane files, or one folder of stacks)"
        )
    if len(planes) < 2:
        raise ImagingInputError(f"{planes[0]}: a stack needs at least two planes")
    out = Path(out)
    prepare_output_dir(out.parent)
    options = {"plane_spacing_um": plane_spacing_um, "align": align, "noise_factor": noise_factor}
    jobs = [(sorted(planes, key=_natural_key), out)]
    return _fuse_all(jobs, options, _tray_max_pixels(max_pixels), progress or Quiet())


def stack_folder(
    stacks: str | Path,
    out: str | Path,
    *,
    pattern: str = "*",
    plane_spacing_um: float | None = None,
    align: bool = True,
    noise_factor: float = 5.0,
    image_format: str = "png",
    max_pixels: int | None = None,
    progress: Progress | None = None,
) -> StackResult:
    """Fuse every stack under ``stacks`` into ``out``: each folder (``stacks`` itself
    included) that holds two or more images matching ``pattern`` is a stack, written as
    ``out/<its path under stacks>.<image_format>``; also writes ``out/stacks.csv``.

    A stack that cannot be read is listed in :attr:`StackResult.failed`; the others go on.
    """
    from foramflow.imaging.save import WRITE_SUFFIXES

    folder, out = Path(stacks), Path(out)
    if f".{image_format}".lower() not in WRITE_SUFFIXES:
        raise ImagingInputError(f"cannot write fused images as {image_format!r}: use png or tif")
    jobs = []
    for stack in _find_stacks(folder, pattern):
        files = sorted(
            (p for p in stack.glob(pattern) if p.is_file() and _is_plain_image(p)),
            key=_natural_key,
        )
        relative = stack.relative_to(folder)
        name = relative if relative.parts else Path(folder.name)
        jobs.append((files, out / name.with_suffix(f".{image_format}")))
    if not jobs:
        raise ImagingInputError(f"{folder}: no folder with two or more images matching {pattern!r}")
    from foramflow.io.tables import write_csv

    prepare_output_dir(out)
    options = {"plane_spacing_um": plane_spacing_um, "align": align, "noise_factor": noise_factor}
    result = _fuse_all(jobs, options, _tray_max_pixels(max_pixels), progress or Quiet())
    summary = pd.DataFrame(result.fused).drop(columns=["planes", "shifts_px"], errors="ignore")
    result.summary = out / STACK_SUMMARY_FILE
    write_csv(summary, result.summary)
    return result


def _fuse_all(jobs, options: dict, max_pixels: int, progress: Progress) -> StackResult:
    result = StackResult(fused=[])
    task = progress.task("stacking", len(jobs))
    try:
        for files, target in jobs:
            try:
                planes = _read_planes(files, max_pixels)
                result.fused.append(fuse_planes(planes, target, sources=files, **options).report)
            except ImageReadError as err:
                result.failed[files[0].parent] = str(err)
            task.advance()
    finally:
        task.done()
    return result


def _read_planes(paths: list[Path], max_pixels: int) -> np.ndarray:
    from foramflow.io.images import read_image

    planes = [read_image(paths[0], max_pixels=max_pixels)]
    for path in paths[1:]:
        plane = read_image(path, max_pixels=max_pixels)
        if plane.shape != planes[0].shape:
            raise ImageReadError(
                path, f"plane of shape {plane.shape} in a stack of shape {planes[0].shape}"
            )
        planes.append(plane)
    return np.stack(planes)


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _is_plain_image(path: Path) -> bool:
    """An image file that is not a depth map written by stacking."""
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


def _tray_max_pixels(max_pixels: int | None) -> int:
    from foramflow.io.images import TRAY_MAX_PIXELS

    return TRAY_MAX_PIXELS if max_pixels is None else max_pixels


# -- segmentation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AllTooSmall:
    """Images whose every region was smaller than the size rule: most often photographs
    with another scale than the one assumed."""

    images: int
    regions: int
    smallest_um2: float
    largest_um2: float
    pixels_per_mm: float
    min_area_um2: float

    def describe(self) -> str:
        pixels_per_um2 = (self.pixels_per_mm / 1000.0) ** 2
        return (
            f"in {self.images} image(s) every region was dropped as smaller than "
            f"{self.min_area_um2:g} µm² at {self.pixels_per_mm:g} pixels per mm; the "
            f"{self.regions} regions found measure {self.smallest_um2:.3g} to "
            f"{self.largest_um2:.3g} µm² ({self.smallest_um2 * pixels_per_um2:,.0f} to "
            f"{self.largest_um2 * pixels_per_um2:,.0f} pixels)"
        )


@dataclass
class SegmentResult:
    """What a segmentation run wrote, and the images it left out (each with the reason)."""

    out: Path
    particles: pd.DataFrame  # the morphometrics table, one row per crop
    rejected: pd.DataFrame  # regions dropped, with the reason
    segmented: list[Path]  # images cut into crops
    failed: dict[Path, str]  # image: why it could not be segmented, naming the file at fault
    skipped: dict[Path, str]  # entries named like images that are not files to read
    written: list[Path]  # the tables; nothing when no image could be segmented
    all_too_small: AllTooSmall | None = None


@dataclass(frozen=True)
class _Cutting:
    """How to segment every image and write its crops."""

    segment: dict  # keyword arguments of segment_image
    suffix: str
    masks: Path | None
    max_pixels: int


def segment_folder(
    images: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    pixels_per_mm: float = DEFAULT_PIXELS_PER_MM,
    threshold: float | str = "auto",
    background: str | Path | None = None,
    min_area_um2: float = 3000.0,
    max_concavity: float | None = None,
    touching_concavity: float = 0.35,
    split: bool = False,
    closing_px: int = 3,
    opening_px: int = 2,
    masks: str | Path | None = None,
    image_format: str = "png",
    max_pixels: int | None = None,
    progress: Progress | None = None,
) -> SegmentResult:
    """Cut tray images into one square crop per particle under ``out``, and measure every
    particle (see the module's description of the files).

    ``images`` are tray images, or folders searched recursively whose first subfolder is
    the sample. ``background`` is an image of the empty tray; ``masks`` a folder for a mask
    per crop. The segmentation settings are those of
    :func:`foramflow.imaging.segment.segment_image`. Images that cannot be read are listed
    in :attr:`SegmentResult.failed`; the others go on.
    """
    from foramflow.imaging.segment import check_threshold

    progress = progress or Quiet()
    check_threshold(threshold)
    if image_format not in CROP_FORMATS:
        formats = ", ".join(CROP_FORMATS)
        raise ImagingInputError(f"crops are written as {formats}, not {image_format!r}")
    max_pixels = _tray_max_pixels(max_pixels)
    options = {
        "pixels_per_mm": pixels_per_mm,
        "threshold": threshold,
        "background": _read_background(background, max_pixels),
        "min_area_um2": min_area_um2,
        "max_concavity": max_concavity,
        "touching_concavity": touching_concavity,
        "split": split,
        "closing_px": closing_px,
        "opening_px": opening_px,
    }
    sources = [Path(images)] if isinstance(images, (str, Path)) else [Path(p) for p in images]
    found, skipped = _find_trays(sources, progress)
    out = prepare_output_dir(Path(out))
    cutting = _Cutting(options, f".{image_format}", Path(masks) if masks else None, max_pixels)
    result = _segment_all(found, out, cutting, progress)
    result.skipped = skipped
    return result


def _read_background(path: str | Path | None, max_pixels: int) -> np.ndarray | None:
    from foramflow.io.images import read_image

    return None if path is None else read_image(path, max_pixels=max_pixels)


def _find_trays(sources: list[Path], progress: Progress):
    """(image, root) pairs to segment, and ``{entry: reason}`` for what is skipped."""
    missing = [p for p in sources if not p.exists()]
    if missing:
        raise ImagingInputError(f"{missing[0]}: no such file or folder")
    found, skipped = _find_images(sources)
    for path, reason in skipped.items():
        progress.message(f"skipped: {printable_path(path)}: {reason}", warning=True)
    if not found:
        raise ImagingInputError("no images found in " + ", ".join(str(p) for p in sources))
    return found, skipped


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


def _segment_all(found, out: Path, cutting: _Cutting, progress: Progress) -> SegmentResult:
    """Segment each image in turn; write the tables when at least one image was cut."""
    tables, rejected_tables, segmented, failed = [], [], [], {}
    task = progress.task("segmenting", len(found))
    try:
        for image_path, root in found:
            try:
                particles, rejected = _segment_one(image_path, root, out, cutting)
            except ImageReadError as err:
                failed[image_path] = str(err)
            else:
                tables.append(particles)
                rejected_tables.append(rejected)
                segmented.append(image_path)
                progress.message(
                    f"{printable_path(image_path)}: {len(particles)} particles "
                    f"({int(particles['touching'].sum())} touching), {len(rejected)} dropped"
                )
            task.advance()
    finally:
        task.done()
    result = SegmentResult(out, pd.DataFrame(), pd.DataFrame(), segmented, failed, {}, [])
    if tables:
        result.particles = pd.concat(tables, ignore_index=True)
        result.rejected = pd.concat(rejected_tables, ignore_index=True)
        result.written = _write_tables(result.particles, result.rejected, out)
        result.all_too_small = _all_too_small(tables, rejected_tables, cutting.segment)
    return result


def _write_tables(particles: pd.DataFrame, rejected: pd.DataFrame, out: Path) -> list[Path]:
    """The tables by :mod:`foramflow.io.tables`' rules: an unknown value (``thickness_um``
    without a depth map) is a null in Parquet and ``NaN`` in CSV."""
    from foramflow.io.tables import write_csv, write_parquet

    written = [out / MORPHOMETRICS_FILE, out / "morphometrics.csv", out / REJECTED_FILE]
    write_parquet(particles, written[0])
    write_csv(particles, written[1])
    write_csv(rejected, written[2])
    return written


def _segment_one(image_path: Path, root: Path, crops_dir: Path, cutting: _Cutting):
    """Segment one image and write its crops; returns its particles and dropped regions."""
    from foramflow.imaging.segment import SegmentationError, segment_image
    from foramflow.io.images import read_image

    image = read_image(image_path, max_pixels=cutting.max_pixels)
    depth = _read_depth_map(image_path, image.shape[:2], cutting.max_pixels)
    try:
        result = segment_image(image, depth_um=depth, **cutting.segment)
    except SegmentationError as err:
        raise ImageReadError(image_path, str(err)) from err
    folder = image_path.parent.relative_to(root) / image_path.stem
    particles = result["particles"]
    paths = _write_crops(image, image_path.stem, result, crops_dir, folder, cutting)
    particles.insert(0, "path", paths)
    particles.insert(1, "abs_path", [str((crops_dir / p).resolve()) for p in paths])
    particles.insert(2, "sample", [Path(p).parts[0] for p in paths])
    particles.insert(3, "source", str(image_path))
    particles["pixels_per_mm"] = cutting.segment["pixels_per_mm"]
    particles["threshold"] = result["threshold"]
    rejected = result["rejected"]
    rejected.insert(0, "source", str(image_path))
    return particles, rejected


def _read_depth_map(image_path: Path, shape: tuple[int, int], max_pixels: int):
    """The depth map (µm) that stacking wrote beside the image, or None."""
    from foramflow.io.images import read_tiff_page

    depth_path = image_path.with_suffix(DEPTH_UM_SUFFIX)
    if not depth_path.is_file():
        return None
    depth = read_tiff_page(depth_path, max_pixels=max_pixels)
    if depth.shape != shape:
        raise ImageReadError(depth_path, f"depth map {depth.shape} for image {shape}")
    return depth


def _write_crops(image, stem: str, result: dict, crops_dir: Path, folder: Path, cutting):
    """Save each particle's crop (and mask); returns the crop paths relative to crops_dir."""
    from foramflow.imaging.save import save_image
    from foramflow.imaging.segment import crop_filename, crop_particles, crop_square

    particles = result["particles"]
    crops = crop_particles(image, result)
    paths = []
    for (_, particle), crop in zip(particles.iterrows(), crops, strict=True):
        relative = folder / crop_filename(stem, particle, suffix=cutting.suffix)
        save_image(crops_dir / relative, crop)
        if cutting.masks is not None:
            top, left, side = (
                int(particle[k]) for k in ("crop_top_px", "crop_left_px", "crop_side_px")
            )
            mask = crop_square(result["labels"] == particle["label"], top, left, side, fill=False)
            save_image((cutting.masks / relative).with_suffix(".png"), mask.astype(np.float32))
        paths.append(relative.as_posix())
    return paths


def _all_too_small(tables, rejected_tables, options: dict) -> AllTooSmall | None:
    """Whether the size rule dropped every region of some images, and their sizes."""
    emptied = [
        rejected[rejected["reason"] == "too_small"]
        for particles, rejected in zip(tables, rejected_tables, strict=True)
        if particles.empty and (rejected["reason"] == "too_small").any()
    ]
    if not emptied:
        return None
    areas_um2 = pd.concat(emptied)["area_um2"]
    return AllTooSmall(
        images=len(emptied),
        regions=len(areas_um2),
        smallest_um2=float(areas_um2.min()),
        largest_um2=float(areas_um2.max()),
        pixels_per_mm=options["pixels_per_mm"],
        min_area_um2=options["min_area_um2"],
    )
