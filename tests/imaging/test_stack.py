"""Focus stacking on a generated Z-stack whose sharp image and depth are known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from foramflow.imaging.stack import (
    depth_from_focus,
    focus_measure,
    fuse_stack,
    plane_shifts,
    sharpness,
    shift_planes,
)


def textured_dome_stack(
    *,
    shape=(96, 96),
    n_planes=9,
    blur_per_plane=1.2,
    dome_height_planes=4.0,
    rim_plane=1.0,
    background=0.05,
    noise=0.01,
    seed=0,
) -> dict:
    """A bright textured dome on a dark tray seen through a focus series, and its truth.

    The dome's surface lies between plane ``rim_plane`` (its rim) and ``rim_plane +
    dome_height_planes`` (its top); the tray lies at plane 0. Each dome pixel is blurred by
    a Gaussian of σ = ``blur_per_plane`` × its distance from the plane in focus; around the
    dome its light and silhouette are blurred as at the rim and laid over the blurred
    tray, so defocused light spreads onto the dark tray as in a microscope (the source of
    halos in naive stackers).
    """
    rng = np.random.default_rng(seed)
    height, width = shape
    yy, xx = np.mgrid[:height, :width]
    distance = np.hypot(yy - height / 2, xx - width / 2) / (0.3 * min(shape))
    mask = distance < 1
    surface = rim_plane + dome_height_planes * np.sqrt(np.clip(1 - distance**2, 0, 1))
    texture = ndi.gaussian_filter(rng.normal(size=shape), 1.5)
    radiance = np.where(mask, 0.6 + 0.35 * texture / np.abs(texture).max(), 0.0)
    tray = background * (1 + 0.3 * ndi.gaussian_filter(rng.normal(size=shape), 1.0))

    step = 0.25
    sigmas = np.arange(0, blur_per_plane * (n_planes + dome_height_planes + rim_plane) + 1, step)
    light_by_sigma = np.stack([ndi.gaussian_filter(radiance, s) for s in sigmas])
    cover_by_sigma = np.stack([ndi.gaussian_filter(mask.astype(float), s) for s in sigmas])
    planes = []
    for plane in range(n_planes):
        position = blur_per_plane * np.abs(surface - plane) / step
        lower = np.floor(position).astype(int)[None]
        frac = position - lower[0]
        light, cover = (
            (1 - frac) * np.take_along_axis(s, lower, 0)[0]
            + frac * np.take_along_axis(s, lower + 1, 0)[0]
            for s in (light_by_sigma, cover_by_sigma)
        )
        image = light + ndi.gaussian_filter(tray, blur_per_plane * plane) * (1 - cover)
        planes.append(image + rng.normal(0.0, noise, size=shape))
    return {
        "planes": np.clip(np.stack(planes), 0, 1).astype(np.float32),
        "sharp": np.where(mask, radiance, tray).astype(np.float32),
        "depth": np.where(mask, surface, 0.0),
        "mask": mask,
    }


@pytest.fixture(scope="module")
def dome():
    return textured_dome_stack()


def psnr(truth, image):
    return peak_signal_noise_ratio(truth, image, data_range=1.0)


def test_fused_image_is_closer_to_the_truth_than_any_plane(dome):
    fused = fuse_stack(dome["planes"])["image"]
    best_plane_psnr = max(psnr(dome["sharp"], plane) for plane in dome["planes"])
    best_plane_ssim = max(
        structural_similarity(dome["sharp"], plane, data_range=1.0) for plane in dome["planes"]
    )
    assert psnr(dome["sharp"], fused) > best_plane_psnr + 3.0
    assert structural_similarity(dome["sharp"], fused, data_range=1.0) > best_plane_ssim + 0.05


def test_depth_map_follows_the_true_surface(dome):
    result = fuse_stack(dome["planes"], plane_spacing_um=70.0)
    inside = dome["mask"]
    correlation = np.corrcoef(result["depth_index"][inside], dome["depth"][inside])[0, 1]
    assert correlation > 0.95
    top = np.unravel_index(np.argmax(np.where(inside, dome["depth"], 0)), inside.shape)
    assert result["depth_index"][top] == pytest.approx(dome["depth"][top], abs=0.5)
    np.testing.assert_allclose(result["depth_um"], 70.0 * result["depth_index"], rtol=1e-6)


@pytest.mark.parametrize("rim_plane", [1.0, 3.0])
def test_no_halo_on_the_dark_tray_around_a_bright_particle(rim_plane):
    stack = textured_dome_stack(rim_plane=rim_plane, seed=2)
    mask = stack["mask"]
    ring = ndi.binary_dilation(mask, iterations=8) & ~ndi.binary_dilation(mask, iterations=1)
    fused = fuse_stack(stack["planes"])["image"]
    tray = stack["sharp"][ring].mean()
    glow = max(plane[ring].mean() for plane in stack["planes"]) - tray
    assert glow > 0.1  # the defocused planes do spread light onto the tray
    assert abs(fused[ring].mean() - tray) < 0.1 * glow


def test_low_contrast_pixels_take_the_depth_of_confident_neighbours():
    focus = np.full((5, 32, 32), 1.0, dtype=np.float32)
    focus[2, :, :4] = 50.0  # a sharp edge in plane 2 on the left
    focus[4, 10:20, 20:30] = 1.3  # noise slightly stronger in plane 4 on a textureless patch
    depth, confidence = depth_from_focus(focus, smoothing=0.5)
    assert confidence[:, :4].min() == 1.0
    assert confidence[10:20, 20:30].max() == 0.0
    np.testing.assert_allclose(depth[10:20, 20:30], 2.0, atol=0.05)


def test_recovers_and_undoes_known_shifts(dome):
    true_shifts = np.array([[-2.0, 4.0], [-1.0, 2.0], [0.0, 0.0], [0.5, -1.0], [1.0, -1.5]])
    planes = dome["planes"][2:7]
    moved = np.stack(
        [
            ndi.shift(p, -s, order=1, mode="nearest")
            for p, s in zip(planes, true_shifts, strict=True)
        ]
    )
    shifts = plane_shifts(moved)
    np.testing.assert_allclose(shifts, true_shifts, atol=0.3)
    inner = (slice(None), slice(8, -8), slice(8, -8))
    assert np.abs(moved - planes)[inner].max() > 0.2
    assert np.abs(shift_planes(moved, shifts) - planes)[inner].max() < 0.05


def test_colour_stack_fuses_channels_with_one_depth_map(dome):
    colour = np.stack([dome["planes"], 0.8 * dome["planes"], 0.5 * dome["planes"]], axis=-1)
    result = fuse_stack(colour, align=False)
    assert result["image"].shape == colour.shape[1:]
    grey = fuse_stack(dome["planes"], align=False)["image"]
    np.testing.assert_allclose(result["image"][..., 2], 0.5 * grey, atol=0.02)


def test_sharpness_and_focus_measure_prefer_the_sharp_image(dome):
    blurred = ndi.gaussian_filter(dome["sharp"], 2.0)
    assert sharpness(dome["sharp"]) > 2 * sharpness(blurred)
    inside = dome["mask"]
    assert focus_measure(dome["sharp"])[inside].mean() > focus_measure(blurred)[inside].mean()


def test_rejects_a_single_plane():
    with pytest.raises(ValueError, match="at least 2 planes"):
        fuse_stack(np.zeros((1, 8, 8)))


def test_real_automorph_stack_is_as_sharp_as_the_commercial_stacker(shared_data):
    from foramflow.imaging.segment import segment_image
    from foramflow.io.images import read_image

    folder = shared_data / "automorph_zstack" / "run3d" / "final" / "stripped"
    folder = folder / "IP.307717_obj00002"
    planes = np.stack([read_image(p) for p in sorted(folder.glob("*_plane*.jpg"))])
    fused = fuse_stack(planes)["image"]
    particles = segment_image(fused, pixels_per_mm=1000.0, min_area_um2=10_000)
    assert len(particles["particles"]) == 1
    specimen = particles["labels"] > 0
    commercial = read_image(folder / "ZS.tif")
    ours = sharpness(fused, mask=specimen)
    assert ours > 0.9 * sharpness(commercial, mask=specimen)
    assert ours > max(sharpness(plane, mask=specimen) for plane in planes)
