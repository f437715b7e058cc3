"""Morphometrics against shapes of known geometry."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk, ellipse

from foramflow.imaging.measure import MORPHOMETRIC_COLUMNS, concavity, measure_particles

PIXELS_PER_MM = 1000.0  # 1 µm per pixel keeps the arithmetic readable


def labelled_shapes():
    labels = np.zeros((200, 200), dtype=np.int32)
    rr, cc = disk((50, 50), 30)
    labels[rr, cc] = 1
    rr, cc = ellipse(140, 120, 20, 40, rotation=0.3)
    labels[rr, cc] = 2
    return labels


def test_disc_and_ellipse_geometry_in_micrometres():
    labels = labelled_shapes()
    image = np.where(labels == 1, 0.8, np.where(labels == 2, 0.4, 0.05)).astype(np.float32)
    table = measure_particles(labels, image, pixels_per_mm=PIXELS_PER_MM)
    assert list(table.columns) == list(MORPHOMETRIC_COLUMNS)
    disc, oval = table.loc[1], table.loc[2]
    assert disc.equivalent_diameter_um == pytest.approx(60.0, rel=0.02)
    assert disc.perimeter_um == pytest.approx(2 * np.pi * 30, rel=0.03)
    assert disc.circularity == pytest.approx(1.0, abs=0.05)
    assert disc.aspect_ratio == pytest.approx(1.0, abs=0.02)
    assert disc.eccentricity < 0.15
    assert disc.solidity > 0.98
    assert oval.major_axis_um == pytest.approx(80.0, rel=0.02)
    assert oval.minor_axis_um == pytest.approx(40.0, rel=0.03)
    assert oval.aspect_ratio == pytest.approx(2.0, rel=0.03)
    assert oval.eccentricity == pytest.approx(np.sqrt(1 - 0.25), abs=0.01)
    assert oval.area_um2 == pytest.approx(np.pi * 20 * 40, rel=0.02)
    assert disc.intensity_mean == pytest.approx(0.8)
    assert disc.intensity_std == pytest.approx(0.0, abs=1e-6)
    assert np.isnan(disc.thickness_um)


def test_units_scale_with_resolution():
    labels = labelled_shapes()
    image = np.zeros(labels.shape, dtype=np.float32)
    fine = measure_particles(labels, image, pixels_per_mm=1000.0)
    coarse = measure_particles(labels, image, pixels_per_mm=500.0)
    assert coarse.loc[1, "equivalent_diameter_um"] == pytest.approx(
        2 * fine.loc[1, "equivalent_diameter_um"]
    )
    assert coarse.loc[1, "area_um2"] == pytest.approx(4 * fine.loc[1, "area_um2"])
    assert coarse.loc[1, "circularity"] == pytest.approx(fine.loc[1, "circularity"])


def test_intensity_spread_and_colour_images():
    labels = labelled_shapes()
    rng = np.random.default_rng(0)
    grey = np.clip(0.5 + 0.1 * rng.normal(size=labels.shape), 0, 1).astype(np.float32)
    colour = np.repeat(grey[..., None], 3, axis=-1)
    table = measure_particles(labels, colour, pixels_per_mm=PIXELS_PER_MM)
    assert table.loc[1, "intensity_mean"] == pytest.approx(0.5, abs=0.01)
    assert table.loc[1, "intensity_std"] == pytest.approx(0.1, abs=0.01)


def test_thickness_is_the_height_range_of_the_visible_surface():
    labels = labelled_shapes()
    yy, xx = np.mgrid[:200, :200]
    dome = 300.0 * np.sqrt(np.clip(1 - ((yy - 50) ** 2 + (xx - 50) ** 2) / 30**2, 0, 1))
    table = measure_particles(
        labels, np.zeros(labels.shape), pixels_per_mm=PIXELS_PER_MM, depth_um=dome
    )
    # over a disc, a hemisphere's relative height h has P(h ≤ t) = t²: percentiles √0.05, √0.95
    expected = 300 * (np.sqrt(0.95) - np.sqrt(0.05))
    assert table.loc[1, "thickness_um"] == pytest.approx(expected, rel=0.03)
    assert table.loc[2, "thickness_um"] == 0.0


def two_discs(centre_distance_in_radii: float, radius: int = 20) -> np.ndarray:
    mask = np.zeros((80, 140), dtype=bool)
    for centre_x in (40, 40 + centre_distance_in_radii * radius):
        rr, cc = disk((40, centre_x), radius, shape=mask.shape)
        mask[rr, cc] = True
    return mask


def test_concavity_separates_touching_pairs_from_single_particles():
    single_disc = two_discs(0.0)
    oval = np.zeros((80, 120), dtype=bool)
    rr, cc = ellipse(40, 60, 15, 45, rotation=0.4)
    oval[rr, cc] = True
    assert concavity(single_disc) < 0.1
    assert concavity(oval) < 0.1
    assert concavity(two_discs(1.9)) > 0.4
    assert concavity(two_discs(1.9)) > concavity(two_discs(1.6)) > concavity(two_discs(1.2))
