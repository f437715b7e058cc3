"""Segment a tray image into particles and cut one square crop per particle (method §1).

Threshold the distance of each pixel's colour from the background (a fixed level, Otsu's
automatic level, or a model made from an image of the empty tray); smooth the mask with a
morphological closing and opening; label connected regions; drop, and report, regions
that touch the image border, are too small, or are too concave; flag touching particles
by the depth of the notch between them and optionally split them with a watershed; then
crop a square of side 2.2·r around each particle's centre of mass, r being its largest
centre-to-edge distance, so that the particle can be rotated without clipping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from foramflow.errors import ForamflowError
from foramflow.imaging.measure import concavity, measure_particles
from foramflow.imaging.scale import DEFAULT_PIXELS_PER_MM

#: Why a region was dropped, in the order the checks are made.
DROP_REASONS = ("border", "too_small", "too_concave")

#: Crop side as a multiple of the particle's maximum radius (room to rotate).
CROP_SCALE = 2.2

REJECTED_COLUMNS = ["label", "reason", "centroid_y_px", "centroid_x_px", "area_um2", "concavity"]


class SegmentationError(ForamflowError, ValueError):
    """A setting or an empty-tray image that segmentation cannot work with."""


def background_deviation(
    image: np.ndarray, *, background: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Distance of every pixel's colour from the background's, in [0, 1] intensity units.

    ``background`` is an image of the empty tray (same shape as ``image``), smoothed here
    into a per-pixel model that absorbs uneven lighting; without it the background is the
    median colour of the image, the tray covering most of it. Both dark and light
    particles stand out, whatever the tray's colour.

    Returns ``(deviation, background_colour)``: (H, W) float32 and the median background
    colour (scalar for grey, (3,) for colour), used to pad crops.
    """
    image = np.asarray(image, dtype=np.float32)
    channel_axes = () if image.ndim == 2 else (-1,)
    if background is None:
        model = np.median(image.reshape(-1, *image.shape[2:]), axis=0)
    else:
        background = np.asarray(background, dtype=np.float32)
        if background.shape != image.shape:
            raise SegmentationError(
                f"empty-tray image has shape {background.shape}, the image {image.shape}"
            )
        sigma = (2.0, 2.0) + (0.0,) * (image.ndim - 2)
        model = ndi.gaussian_filter(background, sigma)
    difference = image - model
    if channel_axes:
        deviation = np.sqrt(np.mean(difference * difference, axis=-1))
    else:
        deviation = np.abs(difference)
    colour = model if background is None else np.median(model.reshape(-1, *image.shape[2:]), 0)
    return deviation.astype(np.float32), np.asarray(colour, dtype=np.float32)


def check_threshold(threshold: float | str) -> None:
    """Refuse a threshold that is neither ``"auto"`` nor a level in [0, 1]: the deviation
    it is compared with lies in [0, 1], so any other level finds nothing, or everything."""
    if threshold == "auto":
        return
    if isinstance(threshold, str) or not 0.0 <= float(threshold) <= 1.0:
        raise SegmentationError(f"threshold must be 'auto' or a level in [0, 1], not {threshold!r}")


def particle_mask(
    deviation: np.ndarray,
    *,
    threshold: float | str = "auto",
    closing_px: int = 3,
    opening_px: int = 2,
    smoothing_px: float = 1.0,
) -> tuple[np.ndarray, float]:
    """Binary particle mask from a background-deviation image.

    The deviation is smoothed by a Gaussian of ``smoothing_px``, thresholded at
    ``threshold`` (a level in [0, 1], or ``"auto"`` for Otsu's), closed with a disc of
    radius ``closing_px`` so that dark sutures between chambers do not cut a shell in
    pieces, opened with a disc of radius ``opening_px`` to remove specks and smooth
    outlines, and its holes are filled (a particle is solid even where it shows the tray
    through it).

    Returns ``(mask, threshold used)``.
    """
    from skimage.filters import threshold_otsu
    from skimage.morphology import disk

    check_threshold(threshold)
    smooth = ndi.gaussian_filter(deviation, smoothing_px) if smoothing_px > 0 else deviation
    level = float(threshold_otsu(smooth)) if threshold == "auto" else float(threshold)
    mask = smooth > level
    if closing_px > 0:
        padded = ndi.binary_closing(np.pad(mask, closing_px), structure=disk(closing_px))
        mask = padded[closing_px:-closing_px, closing_px:-closing_px]
    if opening_px > 0:
        mask = ndi.binary_opening(mask, structure=disk(opening_px))
    return ndi.binary_fill_holes(mask), level


def split_touching(mask: np.ndarray, *, depth_fraction: float = 0.15) -> np.ndarray:
    """Split one region of touching particles by a watershed of its distance transform.

    Each particle is a maximum of the distance to the region's edge; maxima less than
    ``depth_fraction`` of the largest distance above their saddle are merged, so that a
    single particle with an uneven outline stays whole. Returns an int label image.
    """
    from skimage.measure import label
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    distance = ndi.distance_transform_edt(mask)
    markers = label(h_maxima(distance, max(1.0, depth_fraction * distance.max())))
    return watershed(-distance, markers, mask=mask)


def segment_image(
    image: np.ndarray,
    *,
    pixels_per_mm: float = DEFAULT_PIXELS_PER_MM,
    threshold: float | str = "auto",
    background: np.ndarray | None = None,
    min_area_um2: float = 3000.0,
    max_concavity: float | None = None,
    touching_concavity: float = 0.35,
    split: bool = False,
    closing_px: int = 3,
    opening_px: int = 2,
    depth_um: np.ndarray | None = None,
) -> dict:
    """Find the particles on a tray image, measure them and place their crops.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) float in [0, 1].
    pixels_per_mm : optical resolution (default: that of Marchant et al. 2020).
    threshold : ``"auto"`` (Otsu) or a background-deviation level in [0, 1].
    background : image of the empty tray, for a per-pixel background model.
    min_area_um2 : smaller regions are dropped as ``too_small``; the default, 3000 µm²,
        is a disc of 62 µm, the finest sieve fraction counted for foraminifera.
    max_concavity : regions with a deeper notch (:func:`~foramflow.imaging.measure.concavity`)
        are dropped as ``too_concave``; ``None`` keeps them all.
    touching_concavity : regions with at least this concavity are flagged ``touching``
        (the "double" class: two particles in contact).
    split : split touching regions with :func:`split_touching` instead of only flagging.
    closing_px, opening_px : radii of the morphological closing and opening, px
        (:func:`particle_mask`).
    depth_um : depth map from focus stacking, for ``thickness_um``.

    Returns
    -------
    dict with ``labels`` (H, W int, kept particles only), ``particles`` (DataFrame, one
    row per kept particle: label, parent_label, touching, centre of mass, maximum radius,
    crop square, and the morphometrics), ``rejected`` (DataFrame: label, reason, centre,
    area, concavity), ``threshold`` (level used) and ``background_colour`` (for padding).
    """
    from skimage.measure import label as label_regions

    check_threshold(threshold)
    deviation, background_colour = background_deviation(image, background=background)
    mask, level = particle_mask(
        deviation, threshold=threshold, closing_px=closing_px, opening_px=opening_px
    )
    regions = _sort_regions(
        label_regions(mask),
        um2_per_px=(1000.0 / pixels_per_mm) ** 2,
        min_area_um2=min_area_um2,
        max_concavity=max_concavity,
        touching_concavity=touching_concavity,
        split=split,
    )
    particles = crop_geometry(regions.kept)
    particles.insert(1, "parent_label", particles["label"].map(regions.parent))
    particles.insert(2, "touching", particles["label"].map(regions.touching).astype(bool))
    morphometrics = measure_particles(
        regions.kept, image, pixels_per_mm=pixels_per_mm, depth_um=depth_um
    )
    return {
        "labels": regions.kept,
        "particles": particles.join(morphometrics, on="label"),
        "rejected": pd.DataFrame(regions.rejected, columns=REJECTED_COLUMNS),
        "threshold": level,
        "background_colour": background_colour,
    }


@dataclass
class _Regions:
    """Connected regions sorted into kept particles (a label image) and rejected ones."""

    kept: np.ndarray
    touching: dict[int, bool] = field(default_factory=dict)
    parent: dict[int, int] = field(default_factory=dict)
    rejected: list[dict] = field(default_factory=list)


def _sort_regions(
    labels: np.ndarray,
    *,
    um2_per_px: float,
    min_area_um2: float,
    max_concavity: float | None,
    touching_concavity: float,
    split: bool,
) -> _Regions:
    """Keep, flag as touching (or split), or reject each region, in the order of
    :data:`DROP_REASONS`; watershed parts take labels above the regions' own."""
    from skimage.measure import regionprops

    regions = _Regions(kept=np.zeros_like(labels))
    next_label = labels.max() + 1
    for region in regionprops(labels):
        reason, region_concavity = _drop_reason(
            region, labels.shape, um2_per_px, min_area_um2, max_concavity
        )
        if reason is not None:
            regions.rejected.append(_rejection(region, reason, um2_per_px, region_concavity))
            continue
        is_touching = region_concavity >= touching_concavity
        if is_touching and split:
            next_label = _keep_split_parts(regions, region, next_label, um2_per_px, min_area_um2)
        else:
            regions.kept[region.slice][region.image] = region.label
            regions.touching[region.label] = is_touching
            regions.parent[region.label] = region.label
    return regions


def _drop_reason(region, shape, um2_per_px, min_area_um2, max_concavity):
    """(why the region is dropped or None, its concavity: NaN where not yet measured)."""
    top, left, bottom, right = region.bbox
    height, width = shape
    if top == 0 or left == 0 or bottom == height or right == width:
        return "border", np.nan
    if region.area * um2_per_px < min_area_um2:
        return "too_small", np.nan
    region_concavity = concavity(region.image)
    if max_concavity is not None and region_concavity > max_concavity:
        return "too_concave", region_concavity
    return None, region_concavity


def _rejection(region, reason: str, um2_per_px: float, region_concavity: float) -> dict:
    return {
        "label": region.label,
        "reason": reason,
        "centroid_y_px": region.centroid[0],
        "centroid_x_px": region.centroid[1],
        "area_um2": region.area * um2_per_px,
        "concavity": region_concavity,
    }


def _keep_split_parts(regions: _Regions, region, next_label, um2_per_px, min_area_um2) -> int:
    """Keep the watershed parts of a touching region as particles; returns the next label."""
    from skimage.measure import regionprops

    parts = split_touching(region.image)
    window = regions.kept[region.slice]
    for part in regionprops(parts):
        if part.area * um2_per_px < min_area_um2:
            continue  # a sliver of the watershed, not a particle
        window[parts == part.label] = next_label
        regions.touching[next_label], regions.parent[next_label] = True, region.label
        next_label += 1
    return next_label


def crop_geometry(labels: np.ndarray, *, scale: float = CROP_SCALE) -> pd.DataFrame:
    """Centre of mass, maximum radius r and crop square (side ≈ ``scale``·r) per label.

    r is the largest distance from the centre of mass to the centre of a pixel of the
    particle (the radius of a disc, to within a pixel).
    The square is centred on the centre of mass; ``crop_top_px`` and ``crop_left_px`` may
    be negative, or the square may pass the far edges, where it leaves the image.
    """
    from skimage.measure import regionprops

    rows = []
    for region in regionprops(labels):
        centre_y, centre_x = region.centroid
        coords = region.coords
        radius = float(np.hypot(coords[:, 0] - centre_y, coords[:, 1] - centre_x).max())
        side = max(round(scale * radius), 1)
        rows.append(
            {
                "label": region.label,
                "centroid_y_px": centre_y,
                "centroid_x_px": centre_x,
                "max_radius_px": radius,
                "crop_side_px": side,
                "crop_top_px": round(centre_y - (side - 1) / 2),
                "crop_left_px": round(centre_x - (side - 1) / 2),
            }
        )
    columns = [
        "label",
        "centroid_y_px",
        "centroid_x_px",
        "max_radius_px",
        "crop_side_px",
        "crop_top_px",
        "crop_left_px",
    ]
    return pd.DataFrame(rows, columns=columns)


def crop_square(
    image: np.ndarray, top: int, left: int, side: int, *, fill: float | np.ndarray = 0.0
) -> np.ndarray:
    """The ``side``×``side`` window of ``image`` at (top, left), padded with ``fill`` outside."""
    height, width = image.shape[:2]
    out = np.empty((side, side, *image.shape[2:]), dtype=image.dtype)
    out[...] = fill
    y0, y1 = max(top, 0), min(top + side, height)
    x0, x1 = max(left, 0), min(left + side, width)
    if y0 < y1 and x0 < x1:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1]
    return out


def crop_filename(source_stem: str, particle: pd.Series, *, suffix: str = ".png") -> str:
    """``<source>_p<label>_x<col>_y<row><suffix>``: traces a crop to its image and position."""
    return (
        f"{source_stem}_p{int(particle['label']):04d}"
        f"_x{round(particle['centroid_x_px'])}_y{round(particle['centroid_y_px'])}{suffix}"
    )


def crop_particles(image: np.ndarray, segmentation: dict) -> list[np.ndarray]:
    """The crop of each particle of :func:`segment_image`'s result, in table order: its
    square cut from ``image``, padded with the background colour where it leaves the image."""
    particles = segmentation["particles"]
    squares = particles[["crop_top_px", "crop_left_px", "crop_side_px"]].astype(int)
    fill = segmentation["background_colour"]
    return [
        crop_square(image, top, left, side, fill=fill)
        for top, left, side in squares.itertuples(index=False)
    ]
