"""Segmentation against generated trays with known particles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from foramflow.imaging.scale import DEFAULT_PIXELS_PER_MM as PIXELS_PER_MM
from foramflow.imaging.segment import (
    CROP_SCALE,
    background_deviation,
    crop_filename,
    crop_geometry,
    crop_square,
    segment_image,
)

UM_PER_PX = 1000.0 / PIXELS_PER_MM


def synthetic_tray(
    *,
    shape: tuple[int, int] = (400, 400),
    n_discs: int = 5,
    n_ellipses: int = 3,
    radius_px: tuple[float, float] = (10.0, 30.0),
    background: float = 0.08,
    foreground: float = 0.75,
    noise: float = 0.03,
    supersample: int = 4,
    seed: int = 0,
) -> tuple[np.ndarray, pd.DataFrame]:
    """A grey tray image with non-overlapping discs and ellipses, and their true geometry.

    Shapes are drawn anti-aliased (``supersample``² sub-pixels per pixel) so that their
    area, and so their equivalent diameter, is known to well under a pixel.

    Returns
    -------
    image : (H, W) float32 in [0, 1]
    truth : DataFrame with one row per shape: ``centre_y``, ``centre_x`` (px),
        ``semi_major``, ``semi_minor`` (px), ``orientation`` (rad) and
        ``equivalent_diameter_px`` = 2·sqrt(a·b).
    """
    rng = np.random.default_rng(seed)
    height, width = shape
    placed: list[dict] = []
    for index in range(n_discs + n_ellipses):
        is_disc = index < n_discs
        for _ in range(10_000):
            semi_major = rng.uniform(*radius_px)
            semi_minor = semi_major if is_disc else semi_major * rng.uniform(0.45, 0.75)
            margin = semi_major + 3
            centre_y = rng.uniform(margin, height - margin)
            centre_x = rng.uniform(margin, width - margin)
            if all(
                np.hypot(centre_y - p["centre_y"], centre_x - p["centre_x"])
                > semi_major + p["semi_major"] + 6
                for p in placed
            ):
                break
        else:
            raise ValueError(f"cannot place {n_discs + n_ellipses} shapes on a {shape} tray")
        placed.append(
            {
                "centre_y": centre_y,
                "centre_x": centre_x,
                "semi_major": semi_major,
                "semi_minor": semi_minor,
                "orientation": 0.0 if is_disc else rng.uniform(0, np.pi),
            }
        )
    truth = pd.DataFrame(placed)
    truth["equivalent_diameter_px"] = 2 * np.sqrt(truth.semi_major * truth.semi_minor)

    coverage = np.zeros(shape, dtype=np.float32)
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    for shape_row in truth.itertuples():
        y0 = max(int(shape_row.centre_y - shape_row.semi_major) - 2, 0)
        x0 = max(int(shape_row.centre_x - shape_row.semi_major) - 2, 0)
        y1 = min(int(shape_row.centre_y + shape_row.semi_major) + 3, height)
        x1 = min(int(shape_row.centre_x + shape_row.semi_major) + 3, width)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        inside = np.zeros(yy.shape)
        cos, sin = np.cos(shape_row.orientation), np.sin(shape_row.orientation)
        for dy in offsets:
            for dx in offsets:
                v, u = yy + dy - shape_row.centre_y, xx + dx - shape_row.centre_x
                along, across = u * cos + v * sin, -u * sin + v * cos
                inside += (along / shape_row.semi_major) ** 2 + (
                    across / shape_row.semi_minor
                ) ** 2 <= 1
        coverage[y0:y1, x0:x1] += inside / supersample**2
    image = background + (foreground - background) * coverage
    image = image + rng.normal(0.0, noise, size=shape)
    return np.clip(image, 0, 1).astype(np.float32), truth


def match(particles: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """The detected particle nearest to each true shape, row for row."""
    rows = []
    for shape in truth.itertuples():
        distance = np.hypot(
            particles.centroid_y_px - shape.centre_y, particles.centroid_x_px - shape.centre_x
        )
        row = particles.loc[distance.idxmin()].copy()
        row["offset_px"] = distance.min()
        rows.append(row)
    return pd.DataFrame(rows).reset_index(drop=True)


@pytest.fixture(scope="module")
def tray():
    return synthetic_tray(shape=(420, 420), n_discs=6, n_ellipses=4, radius_px=(12, 32), seed=3)


def test_every_disc_and_ellipse_gives_one_crop_of_the_right_size(tray):
    image, truth = tray
    result = segment_image(image, pixels_per_mm=PIXELS_PER_MM, min_area_um2=100)
    particles = result["particles"]
    assert len(particles) == len(truth)
    assert result["rejected"].empty
    found = match(particles, truth)
    assert found.label.is_unique
    assert found.offset_px.max() < 0.5
    true_diameter_um = truth.equivalent_diameter_px * UM_PER_PX
    np.testing.assert_allclose(found.equivalent_diameter_um, true_diameter_um, rtol=0.02)
    np.testing.assert_allclose(found.max_radius_px, truth.semi_major, atol=1.0)
    np.testing.assert_array_equal(
        found.crop_side_px, np.round(CROP_SCALE * found.max_radius_px).astype(int)
    )
    assert not found.touching.any()
    disc = found[truth.semi_major == truth.semi_minor]
    ellipse = found[truth.semi_major != truth.semi_minor]
    assert disc.aspect_ratio.max() < 1.05
    np.testing.assert_allclose(
        ellipse.aspect_ratio, (truth.semi_major / truth.semi_minor)[ellipse.index], rtol=0.05
    )


def test_border_and_small_regions_are_dropped_and_reported(tray):
    image, truth = tray
    image = image.copy()
    image[200:230, 0:15] = 0.75  # a particle cut by the left edge
    image[100:108, 200:208] = 0.75  # an 8 × 8 px speck
    result = segment_image(image, pixels_per_mm=PIXELS_PER_MM, min_area_um2=100)
    assert len(result["particles"]) == len(truth)
    reasons = result["rejected"].set_index("reason")
    assert set(reasons.index) == {"border", "too_small"}
    assert reasons.loc["border", "centroid_x_px"] < 15
    assert reasons.loc["too_small", "area_um2"] == pytest.approx(64 * UM_PER_PX**2, rel=0.3)


def touching_pair(background=0.08, foreground=0.75, radius=20, seed=0):
    yy, xx = np.mgrid[:120, :200]
    image = np.full(yy.shape, background)
    for centre_x in (70, 70 + 1.9 * radius):
        image[np.hypot(yy - 60, xx - centre_x) <= radius] = foreground
    return image + np.random.default_rng(seed).normal(0, 0.02, image.shape)


def test_touching_particles_are_flagged_not_silently_merged():
    result = segment_image(touching_pair(), pixels_per_mm=PIXELS_PER_MM, min_area_um2=100)
    particles = result["particles"]
    assert len(particles) == 1
    assert particles.touching.iloc[0]
    assert particles.concavity.iloc[0] > 0.35


def test_touching_particles_split_by_watershed():
    result = segment_image(
        touching_pair(), pixels_per_mm=PIXELS_PER_MM, min_area_um2=100, split=True
    )
    particles = result["particles"]
    assert len(particles) == 2
    assert particles.touching.all()
    assert particles.parent_label.nunique() == 1
    np.testing.assert_allclose(particles.equivalent_diameter_um, 40 * UM_PER_PX, rtol=0.06)
    np.testing.assert_allclose(sorted(particles.centroid_x_px), [70, 108], atol=1.5)


def test_too_concave_regions_are_dropped_when_asked():
    result = segment_image(
        touching_pair(), pixels_per_mm=PIXELS_PER_MM, min_area_um2=100, max_concavity=0.3
    )
    assert result["particles"].empty
    assert result["rejected"].reason.tolist() == ["too_concave"]


def test_dark_particles_on_a_light_tray(tray):
    image, truth = tray
    result = segment_image(1.0 - image, pixels_per_mm=PIXELS_PER_MM, min_area_um2=100)
    assert len(result["particles"]) == len(truth)


def test_empty_tray_model_absorbs_uneven_lighting(tray):
    image, truth = tray
    lighting = np.linspace(0.0, 0.5, image.shape[1], dtype=np.float32)[None, :]
    rng = np.random.default_rng(7)
    empty = np.clip(0.08 + lighting + rng.normal(0, 0.03, image.shape), 0, 1)
    result = segment_image(
        image + lighting, pixels_per_mm=PIXELS_PER_MM, min_area_um2=100, background=empty
    )
    assert len(result["particles"]) == len(truth)
    found = match(result["particles"], truth)
    np.testing.assert_allclose(
        found.equivalent_diameter_um, truth.equivalent_diameter_px * UM_PER_PX, rtol=0.04
    )
    with pytest.raises(ValueError, match="empty-tray image has shape"):
        background_deviation(image, background=empty[:10])


def test_fixed_threshold_level(tray):
    image, truth = tray
    result = segment_image(image, pixels_per_mm=PIXELS_PER_MM, min_area_um2=100, threshold=0.3)
    assert result["threshold"] == 0.3
    assert len(result["particles"]) == len(truth)
    too_high = segment_image(image, pixels_per_mm=PIXELS_PER_MM, min_area_um2=100, threshold=0.9)
    assert too_high["particles"].empty


def test_colour_images_segment_like_grey(tray):
    image, truth = tray
    colour = np.stack([image, 0.9 * image, 0.7 * image], axis=-1)
    result = segment_image(colour, pixels_per_mm=PIXELS_PER_MM, min_area_um2=100)
    assert len(result["particles"]) == len(truth)
    assert result["background_colour"].shape == (3,)


def test_crop_square_is_centred_on_the_centre_of_mass():
    labels = np.zeros((50, 60), dtype=np.int32)
    yy, xx = np.mgrid[:50, :60]
    labels[np.hypot(yy - 25, xx - 30) <= 8] = 1
    geometry = crop_geometry(labels).iloc[0]
    assert (geometry.centroid_y_px, geometry.centroid_x_px) == pytest.approx((25, 30))
    assert geometry.max_radius_px == pytest.approx(8)
    side = int(geometry.crop_side_px)
    assert side == round(CROP_SCALE * 8)
    crop = crop_square(labels, int(geometry.crop_top_px), int(geometry.crop_left_px), side)
    centre = (side - 1) / 2
    np.testing.assert_allclose(np.argwhere(crop == 1).mean(axis=0), [centre, centre], atol=0.5)


def test_crop_is_padded_with_background_where_it_leaves_the_image():
    image = np.full((10, 12, 3), 0.5, dtype=np.float32)
    crop = crop_square(image, -3, -2, 8, fill=np.array([0.1, 0.2, 0.3]))
    assert crop.shape == (8, 8, 3)
    np.testing.assert_allclose(crop[:3].reshape(-1, 3), [[0.1, 0.2, 0.3]] * 24)
    np.testing.assert_allclose(crop[3:, :2].reshape(-1, 3), [[0.1, 0.2, 0.3]] * 10)
    np.testing.assert_allclose(crop[3:, 2:], 0.5)


def test_crop_names_trace_back_to_image_and_position():
    particle = pd.Series({"label": 7, "centroid_x_px": 120.4, "centroid_y_px": 33.6})
    assert crop_filename("tray_01", particle) == "tray_01_p0007_x120_y34.png"


def test_generated_foraminifera_slide_count_and_doubles():
    from foramflow.data.synthetic import make_slide

    classes = ["trochospiral", "planispiral", "spherical", "double"]
    slide = make_slide(n_particles=12, classes=classes, pixel_size_um=5.0, seed=4)
    result = segment_image(slide.image, pixels_per_mm=200.0, min_area_um2=3000)
    particles = result["particles"]
    assert len(particles) == len(slide.truth)
    truth = slide.truth.rename(columns={"y": "centre_y", "x": "centre_x"})
    found = match(particles, truth)
    assert found.label.is_unique
    doubles = (truth["class"] == "double").to_numpy()
    assert found.touching[doubles].all()


# Particles counted by eye on the four tray photos (whole particles, not cut by the edge).
TRAY_COUNTS_BY_EYE = {
    "multi_bones_DSC_0049": 25,
    "multi_bones_DSC_0050": 24,
    "multi_rocks_DSC_0049": 25,
    "multi_rocks_DSC_0050": 28,
}


@pytest.mark.parametrize("name", sorted(TRAY_COUNTS_BY_EYE))
def test_real_tray_photo_counts(shared_data, name):
    from foramflow.io.images import read_image

    path = shared_data / "rcos_bones_rocks" / "multi_particle_slides" / f"{name}.png"
    # No scale on the photos: particles of about 2 mm are about 40 px, so 20 px/mm.
    result = segment_image(read_image(path), pixels_per_mm=20.0, min_area_um2=200_000)
    assert abs(len(result["particles"]) - TRAY_COUNTS_BY_EYE[name]) <= 1


@pytest.mark.parametrize("level", [7, -0.1, float("nan"), "high"])
def test_threshold_outside_0_1_is_refused(tray, level):
    image, _ = tray
    with pytest.raises(ValueError, match=r"threshold must be 'auto' or a level in \[0, 1\]"):
        segment_image(image, pixels_per_mm=PIXELS_PER_MM, threshold=level)
