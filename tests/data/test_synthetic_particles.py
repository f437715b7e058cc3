"""Synthetic particles: deterministic, centred, the requested size, every morphotype."""

import numpy as np
import pytest

from foramflow.data.synthetic import MORPHOTYPES, render_particle


@pytest.mark.parametrize("morphotype", MORPHOTYPES)
def test_particle_is_centred_with_the_requested_radius(morphotype):
    rng = np.random.default_rng(7)
    for _ in range(3):
        image, mask = render_particle(morphotype, size_px=60, rng=rng)
        assert image.shape == mask.shape == (66, 66)  # 2.2 radii, as the segmenter crops
        assert image.dtype == np.float32
        assert image.min() >= 0 and image.max() <= 1
        rows, cols = np.nonzero(mask)
        centre = (66 - 1) / 2
        assert abs(rows.mean() - centre) < 1 and abs(cols.mean() - centre) < 1
        radius = np.hypot(rows - rows.mean(), cols - cols.mean()).max()
        assert radius == pytest.approx(30, abs=1.5)
        # Bright on a dark tray.
        assert np.median(image[mask]) > 2 * np.median(image[~mask])


def test_same_seed_same_particle_and_other_seed_another():
    first = render_particle("trochospiral", size_px=50, rng=np.random.default_rng(3))
    again = render_particle("trochospiral", size_px=50, rng=np.random.default_rng(3))
    other = render_particle("trochospiral", size_px=50, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_colour_particle_is_rgb_and_cream_not_grey():
    image, mask = render_particle(
        "spherical", size_px=40, rng=np.random.default_rng(0), colour=True
    )
    assert image.shape == (44, 44, 3)
    red, blue = image[mask][:, 0].mean(), image[mask][:, 2].mean()
    assert red > blue


def test_morphotypes_differ_in_outline():
    """Elongated classes are elongated, round ones round: outlines carry the class."""

    def elongation(morphotype):
        rng = np.random.default_rng(11)
        values = []
        for _ in range(8):
            _, mask = render_particle(morphotype, size_px=60, rng=rng)
            coords = np.argwhere(mask).astype(float)
            eigen = np.linalg.eigvalsh(np.cov(coords.T))
            values.append(np.sqrt(eigen[1] / eigen[0]))
        return np.median(values)

    assert elongation("spherical") < 1.1
    assert elongation("uniserial") > 2.5
    assert elongation("biserial") > 2
    assert elongation("trochospiral") < elongation("biserial")


def test_unknown_morphotype_is_refused():
    with pytest.raises(ValueError, match="unknown morphotype 'ammonite'"):
        render_particle("ammonite", size_px=40, rng=np.random.default_rng(0))
