"""Morphometrics of segmented particles in physical units.

Geometry comes from scikit-image's region properties; this module only converts pixels to
micrometres, adds the few measures regionprops lacks (circularity, aspect ratio, the
depth of the deepest concavity, thickness from a depth map), and returns one table row
per particle.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from foramflow.imaging.stack import luma

#: Column order of :func:`measure_particles`; lengths in µm, areas in µm².
MORPHOMETRIC_COLUMNS = (
    "area_um2",
    "equivalent_diameter_um",
    "perimeter_um",
    "major_axis_um",
    "minor_axis_um",
    "aspect_ratio",
    "solidity",
    "circularity",
    "eccentricity",
    "concavity",
    "intensity_mean",
    "intensity_std",
    "thickness_um",
)


def concavity(mask: np.ndarray) -> float:
    """Depth of the deepest notch in a region's outline, relative to its equivalent radius.

    The notch depth is the largest distance from a pixel of the convex hull that is not in
    the region to the hull's edge. About 0.05 for pixelated discs and ellipses, 0.25 for a
    shell of three lobed chambers, 0.4 for two equal discs overlapping by a tenth of their
    diameter and 0.7 for two that just touch.
    """
    from skimage.morphology import convex_hull_image

    mask = np.pad(np.asarray(mask, dtype=bool), 1)
    hull = convex_hull_image(mask)
    notches = hull & ~mask
    if not notches.any():
        return 0.0
    depth = ndi.distance_transform_edt(hull)[notches].max()
    return float(depth / np.sqrt(mask.sum() / np.pi))


def measure_particles(
    labels: np.ndarray,
    image: np.ndarray,
    *,
    pixels_per_mm: float,
    depth_um: np.ndarray | None = None,
) -> pd.DataFrame:
    """Morphometrics of every labelled particle, in µm.

    Parameters
    ----------
    labels : (H, W) int label image, 0 = background.
    image : (H, W) or (H, W, 3) float image in [0, 1]; intensities are measured on its luma.
    pixels_per_mm : optical resolution, to convert pixels to µm.
    depth_um : optional (H, W) depth map from focus stacking; gives ``thickness_um``, the
        height range of the particle's visible surface (5th to 95th percentile of depth
        over the particle), a lower bound on its true thickness.

    Returns
    -------
    DataFrame indexed by label with :data:`MORPHOMETRIC_COLUMNS`.
    """
    from skimage.measure import regionprops

    um_per_px = 1000.0 / pixels_per_mm
    grey = luma(image)
    rows = {}
    for region in regionprops(labels, intensity_image=grey):
        area = float(region.area)
        perimeter = float(region.perimeter_crofton)
        major, minor = float(region.axis_major_length), float(region.axis_minor_length)
        thickness = np.nan
        if depth_um is not None:
            low, high = np.percentile(depth_um[region.slice][region.image], [5, 95])
            thickness = float(high - low)
        rows[region.label] = {
            "area_um2": area * um_per_px**2,
            "equivalent_diameter_um": float(region.equivalent_diameter_area) * um_per_px,
            "perimeter_um": perimeter * um_per_px,
            "major_axis_um": major * um_per_px,
            "minor_axis_um": minor * um_per_px,
            "aspect_ratio": major / minor if minor > 0 else np.inf,
            "solidity": float(region.solidity),
            "circularity": 4 * np.pi * area / perimeter**2 if perimeter > 0 else np.nan,
            "eccentricity": float(region.eccentricity),
            "concavity": concavity(region.image),
            "intensity_mean": float(region.intensity_mean),
            "intensity_std": float(region.intensity_std),
            "thickness_um": thickness,
        }
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(MORPHOMETRIC_COLUMNS))
    table.index.name = "label"
    return table
