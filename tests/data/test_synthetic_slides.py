"""Synthetic slides and Z-stacks: the stored truth matches what is in the pictures."""

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage import measure, morphology

from foramflow.data.synthetic import make_slide, make_zstack, save_slide


def _radius(region) -> float:
    rows, cols = region.coords.T
    return float(np.hypot(rows - region.centroid[0], cols - region.centroid[1]).max())


def test_truth_table_matches_the_label_image():
    slide = make_slide(n_particles=20, seed=2)
    truth = slide.truth.set_index("id")
    regions = measure.regionprops(slide.labels)
    assert sorted(r.label for r in regions) == list(range(1, 21))
    for region in regions:
        row = truth.loc[region.label]
        assert row["area_px"] == region.area
        assert row["y"] == pytest.approx(region.centroid[0])
        assert row["x"] == pytest.approx(region.centroid[1])
        assert row["radius_px"] == pytest.approx(_radius(region))
        assert row["radius_um"] == pytest.approx(row["radius_px"] * 5.0)


@pytest.mark.parametrize("seed", [0, 3])
def test_thresholding_the_slide_finds_the_true_particles(seed):
    """A plain threshold above the tray recovers the count, positions and radii."""
    slide = make_slide(n_particles=25, seed=seed)
    tray = np.median(slide.image[slide.labels == 0])
    found = measure.label(morphology.opening(slide.image > tray + 0.08, morphology.disk(1)))
    regions = [r for r in measure.regionprops(found) if r.area >= 20]
    assert len(regions) == 25
    errors = []
    for row in slide.truth.itertuples():
        nearest = min(regions, key=lambda r: np.hypot(r.centroid[1] - row.x, r.centroid[0] - row.y))
        assert np.hypot(nearest.centroid[1] - row.x, nearest.centroid[0] - row.y) < 2
        errors.append(_radius(nearest) / row.radius_px - 1)
    assert np.max(np.abs(errors)) < 0.1


def test_slide_is_deterministic_and_classes_are_respected():
    first = make_slide(n_particles=8, classes=["spherical", "biserial"], seed=5)
    again = make_slide(n_particles=8, classes=["spherical", "biserial"], seed=5)
    np.testing.assert_array_equal(first.image, again.image)
    assert set(first.truth["class"]) <= {"spherical", "biserial"}
    only = make_slide(n_particles=6, classes=["spherical"], seed=1)
    assert set(only.truth["class"]) == {"spherical"}


def test_particle_sizes_follow_the_pixel_size():
    coarse = make_slide(n_particles=10, classes=["spherical"], pixel_size_um=8.0, seed=4)
    fine = make_slide(n_particles=10, classes=["spherical"], pixel_size_um=4.0, seed=4)
    assert coarse.truth["radius_um"].median() == pytest.approx(
        fine.truth["radius_um"].median(), rel=0.05
    )
    assert fine.truth["radius_px"].median() == pytest.approx(
        2 * coarse.truth["radius_px"].median(), rel=0.05
    )
    # Orbulina-like spheres are some 450 µm across.
    assert 150 < coarse.truth["radius_um"].median() < 300


def test_crowded_tray_is_refused():
    with pytest.raises(ValueError, match="no room"):
        make_slide(n_particles=40, shape=(150, 150), seed=0)


def test_save_slide_writes_image_labels_and_truth(tmp_path):
    slide = make_slide(n_particles=5, seed=1)
    image_path, labels_path, truth_path = save_slide(slide, tmp_path, name="tray")
    assert Image.open(image_path).mode == "L"
    np.testing.assert_array_equal(np.asarray(Image.open(labels_path)), slide.labels)
    assert truth_path.read_text().startswith("id,class,x,y,radius_px")


def test_zstack_depth_map_and_focus():
    stack = make_zstack(n_particles=5, classes=["spherical"], seed=3)
    assert stack.planes.shape[0] == len(stack.plane_z_um)
    assert np.allclose(np.diff(stack.plane_z_um), stack.plane_spacing_um)
    assert stack.plane_z_um.max() >= stack.depth_um.max() - stack.plane_spacing_um
    # Depth is 0 on the tray; a sphere's top is about its diameter above it.
    assert np.all(stack.depth_um[stack.labels == 0] == 0)
    for row in stack.truth.itertuples():
        top = stack.depth_um[stack.labels == row.id].max()
        assert top == pytest.approx(2 * row.radius_um, rel=0.12)
    # The top of each sphere is sharp in the plane nearest to it and blurred in the plane
    # on the tray (differences smoothed so that sensor noise averages out).
    for row in stack.truth.itertuples():
        inside = stack.labels == row.id
        top = stack.depth_um[inside].max()
        cap = inside & (stack.depth_um > top - 40)
        nearest = int(np.argmin(np.abs(stack.plane_z_um - top)))

        def blur(plane, cap=cap):
            return np.abs(ndimage.gaussian_filter(plane - stack.sharp, 2))[cap].mean()

        assert blur(stack.planes[nearest]) < 0.5 * blur(stack.planes[0])
