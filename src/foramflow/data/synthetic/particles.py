"""Render posed chamber geometry as a microscope would see it: bright tests on a dark tray.

The visible surface of a test is the upper envelope of its ellipsoidal chambers, a height
field. Its slope gives the shading under a ring light (light from all azimuths at one
elevation); its valleys (sutures, umbilicus) are darkened as light reaches them less; pores
and mottling modulate the wall's albedo. Everything is vectorised numpy and scipy.ndimage, so
a 128-pixel crop takes about a millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from foramflow.data.synthetic.shapes import MORPHOTYPES, Particle, make_particle
from foramflow.errors import InvalidInput

CROP_MARGIN = 2.2
"""Crop side as a multiple of the particle radius, as the segmenter crops (METHOD.md §1)."""


@dataclass(frozen=True)
class Lighting:
    """Ring-light elevation above the tray (radians) and the diffuse share of the light."""

    elevation: float
    ambient: float
    gloss: float

    @staticmethod
    def random(rng: np.random.Generator) -> Lighting:
        return Lighting(
            elevation=rng.uniform(np.radians(35), np.radians(65)),
            ambient=rng.uniform(0.05, 0.2),
            gloss=rng.uniform(0.0, 0.15),
        )


@dataclass(frozen=True)
class Rendered:
    """A particle without background: ``radiance`` (S, S) or (S, S, 3) in [0, 1], its ``mask``
    and ``height_px``, the surface height above the tray in pixels (0 outside the mask)."""

    radiance: np.ndarray
    mask: np.ndarray
    height_px: np.ndarray


def particle_frame(particle: Particle) -> tuple[np.ndarray, float]:
    """Centroid (x, y) of the particle's silhouette and its largest centroid-to-outline distance.

    The centroid is taken on a raster of the silhouette; the radius from points on the chamber
    outlines (exact for whole tests) and, for the rough cut edge of fragments, from a finer
    raster.
    """
    chambers = particle.chambers
    points = chambers.silhouette_points(96 if particle.cuts else 48)
    points = points[particle.keeps(*points.T)]
    centroid = points.mean(axis=0)
    outline = chambers.outline_points()
    outline = outline[particle.keeps(*outline.T)]
    radius = np.hypot(*(np.concatenate([outline, points]) - centroid).T).max()
    return centroid, float(radius)


def _surface(centre: np.ndarray, form: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Height of an ellipsoid's upper surface over (x, y); -inf outside its silhouette."""
    dx, dy = x - centre[0], y - centre[1]
    a = form[2, 2]
    b = form[0, 2] * dx + form[1, 2] * dy
    c = form[0, 0] * dx * dx + 2 * form[0, 1] * dx * dy + form[1, 1] * dy * dy - 1
    disc = b * b - a * c
    with np.errstate(invalid="ignore"):
        top = centre[2] + (np.sqrt(disc) - b) / a
    return np.where(disc >= 0, top, -np.inf)


def _height_field(
    particle: Particle, *, side: int, radius_px: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Height above the tray (pixels, -inf outside), top chamber index and mask on a square grid.

    The silhouette's centroid lands on the grid centre and its radius is ``radius_px``.
    """
    centroid, radius = particle_frame(particle)
    unit = radius / radius_px  # model units per pixel
    centre_px = (side - 1) / 2
    chambers = particle.chambers
    height = np.full((side, side), -np.inf)
    top = np.zeros((side, side), np.int32)
    extents = chambers.extents()
    coords = (np.arange(side) - centre_px) * unit
    for k, (centre, form) in enumerate(zip(chambers.centres, chambers.forms, strict=True)):
        lo = np.floor((centre[:2] - extents[k, :2] - centroid) / unit + centre_px).astype(int)
        hi = np.ceil((centre[:2] + extents[k, :2] - centroid) / unit + centre_px).astype(int) + 1
        c0, r0 = np.maximum(lo, 0)
        c1, r1 = np.minimum(hi, side)
        if c1 <= c0 or r1 <= r0:
            continue
        x = coords[None, c0:c1] + centroid[0]
        y = coords[r0:r1, None] + centroid[1]
        z = _surface(centre, form, x, y)
        window = height[r0:r1, c0:c1]
        higher = z > window
        window[higher] = z[higher]
        top[r0:r1, c0:c1][higher] = k
    x = coords[None, :] + centroid[0]
    y = coords[:, None] + centroid[1]
    mask = np.isfinite(height) & particle.keeps(x, y)
    floor = np.min(chambers.centres[:, 2] - extents[:, 2])
    height = np.where(mask, (height - floor) / unit, 0.0)
    return height, top, mask


def _ring_light(slope: np.ndarray, lighting: Lighting) -> np.ndarray:
    """Brightness of a surface of slope |∇h| under a ring of lights at one elevation.

    With tilt α of the normal, n·l = cos α sin e + sin α cos e cos φ; the diffuse part is
    its positive part averaged over the ring's azimuths φ. It is tabulated on a uniform grid
    of s / (1 + s), s the slope, and looked up by index (one table per particle).
    """
    steps = 512
    grid = np.arange(steps) / steps
    tilt = np.arctan(grid / (1 - grid))
    a = np.cos(tilt) * np.sin(lighting.elevation)
    b = np.sin(tilt) * np.cos(lighting.elevation)
    with np.errstate(divide="ignore", invalid="ignore"):
        limit = np.arccos(np.clip(-a / b, -1, 1))
        partial = (a * limit + b * np.sin(limit)) / np.pi
    diffuse = np.where(a >= b, a, partial)
    # A glossy wall reflects the ring straight up where its normal bisects light and view.
    highlight_tilt = (np.pi / 2 - lighting.elevation) / 2
    gloss = lighting.gloss * np.exp(-(((tilt - highlight_tilt) / 0.08) ** 2))
    table = (lighting.ambient + diffuse + gloss) / (lighting.ambient + np.sin(lighting.elevation))
    index = (slope / (1 + slope) * steps).astype(np.intp)
    return table.astype(np.float32)[np.minimum(index, steps - 1)]


def _steepest_slope(height: np.ndarray) -> np.ndarray:
    """|∇h| from the steeper of the forward and backward differences on each axis.

    Central differences would average the two flanks of a suture into a flat, bright line.
    """
    squares = []
    for axis in (0, 1):
        step = np.diff(height, axis=axis)
        pad = [(0, 0), (0, 0)]
        pad[axis] = (1, 0)
        backward = np.pad(step, pad, mode="edge")
        pad[axis] = (0, 1)
        forward = np.pad(step, pad, mode="edge")
        squares.append(np.maximum(backward * backward, forward * forward))
    return np.sqrt(squares[0] + squares[1])


def _spots(shape: tuple[int, int], spacing_px: float, rng: np.random.Generator) -> np.ndarray:
    """Random round spots about ``spacing_px`` apart, each peaking near 1 (pores)."""
    sigma = max(0.2 * spacing_px, 0.4)
    seeds = (rng.random(shape) < 1 / spacing_px**2).astype(np.float32)
    return np.clip(ndimage.gaussian_filter(seeds, sigma) * (2 * np.pi * sigma**2), 0, 1)


def _smooth_noise(shape: tuple[int, int], scale_px: float, rng: np.random.Generator):
    """Zero-mean, unit-variance noise smooth over ``scale_px`` pixels.

    Broad noise is made on a coarse grid and interpolated up, which costs the same at any scale.
    """
    step = max(scale_px / 2, 1.0)
    coarse_shape = tuple(int(np.ceil(n / step)) + 2 for n in shape)
    noise = rng.standard_normal(coarse_shape).astype(np.float32)
    noise = ndimage.gaussian_filter(noise, scale_px / step, mode="wrap")
    if step > 1:
        size = (int(coarse_shape[1] * step), int(coarse_shape[0] * step))
        noise = np.asarray(Image.fromarray(noise, mode="F").resize(size, Image.BILINEAR))
    noise = noise[: shape[0], : shape[1]]
    return noise / (noise.std() + 1e-6)


def _wall_colour(rng: np.random.Generator) -> np.ndarray:
    """Calcite is white to cream; a few tests are stained pinkish."""
    if rng.random() < 0.1:
        return np.array([1.0, rng.uniform(0.75, 0.85), rng.uniform(0.72, 0.82)])
    return np.array([1.0, rng.uniform(0.9, 0.97), rng.uniform(0.75, 0.9)])


def draw_particle(
    particle: Particle,
    *,
    side: int,
    radius_px: float,
    rng: np.random.Generator,
    lighting: Lighting,
    colour: bool = False,
) -> Rendered:
    """Shade ``particle`` on a ``side``-pixel square, centred, with silhouette radius
    ``radius_px``; no background, blur or noise (those belong to the whole picture)."""
    height, top, mask = _height_field(particle, side=side, radius_px=radius_px)
    shape = (side, side)
    size = 2 * radius_px
    # Surface relief: fine bumps on the wall and pits at the pores.
    pore_spacing = max(size * rng.uniform(0.01, 0.02), 1.5)
    pores = _spots(shape, pore_spacing, rng)
    relief = height - pores * pore_spacing * rng.uniform(0.03, 0.12)
    relief += _smooth_noise(shape, max(size * 0.01, 0.6), rng) * size * rng.uniform(0.0002, 0.001)
    shading = _ring_light(_steepest_slope(relief), lighting)
    # Sutures and the umbilicus are valleys: less light reaches them.
    cavity = height - ndimage.gaussian_filter(height, size * 0.04)
    occlusion = np.clip(1 + 4.0 * cavity / size, 0.35, 1.0)
    albedo = particle.chambers.albedo[top]
    albedo = albedo * (1 + 0.06 * _smooth_noise(shape, size * 0.05, rng))
    albedo = albedo * (1 - rng.uniform(0.08, 0.2) * pores)
    # Calcite is translucent: light scattered through the wall makes the outline glow.
    rim = 1 - ndimage.gaussian_filter(mask.astype(np.float32), max(size * 0.01, 0.7))
    glow = rng.uniform(0.1, 0.35) * np.clip(2 * rim, 0, 1)
    exposure = rng.uniform(0.8, 1.05)
    lit = (shading * occlusion) ** rng.uniform(1.2, 1.8) + glow
    grey = np.clip(exposure * albedo * lit, 0, 1) * mask
    radiance = grey[..., None] * _wall_colour(rng) if colour else grey
    return Rendered(radiance.astype(np.float32), mask, height.astype(np.float32))


def tray_background(
    shape: tuple[int, int], rng: np.random.Generator, *, colour: bool = False
) -> np.ndarray:
    """A dark, slightly uneven tray with fine grain: (H, W) or (H, W, 3) float32."""
    level = rng.uniform(0.01, 0.08)
    scale = max(shape) * rng.uniform(0.1, 0.3)
    grey = level * (1 + 0.3 * _smooth_noise(shape, scale, rng))
    grey = np.clip(grey, 0, 1).astype(np.float32)
    if not colour:
        return grey
    tint = np.array([1.0, 1.0, 1.0]) + rng.normal(0, 0.08, 3)
    return np.clip(grey[..., None] * tint, 0, 1).astype(np.float32)


def optical_blur(image: np.ndarray, blur_px: float) -> np.ndarray:
    """The lens's point spread, a Gaussian of ``blur_px`` pixels, on grey or RGB images."""
    sigma = (blur_px, blur_px, 0) if image.ndim == 3 else blur_px
    return ndimage.gaussian_filter(image, sigma)


def add_sensor_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Read noise plus shot-like noise that grows with brightness; clipped to [0, 1]."""
    noise = rng.standard_normal(image.shape).astype(np.float32)
    image = image + noise * (0.006 + 0.02 * np.sqrt(np.clip(image, 0, 1)))
    return np.clip(image, 0, 1).astype(np.float32)


def composite(background: np.ndarray, rendered: Rendered, top_left=(0, 0)) -> None:
    """Paint ``rendered`` onto ``background`` in place, its corner at ``top_left`` (row, col)."""
    r, c = top_left
    h, w = rendered.mask.shape
    window = background[r : r + h, c : c + w]
    window[rendered.mask] = rendered.radiance[rendered.mask]


def render_particle(
    morphotype: str, *, size_px: float, rng: np.random.Generator, colour: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """One particle as the segmenter would crop it from a tray image.

    Parameters
    ----------
    morphotype
        One of :data:`MORPHOTYPES`.
    size_px
        The particle's diameter in pixels: twice its largest centroid-to-outline distance.
        The image is a square of side ``round(1.1 · size_px)`` (2.2 radii), centred on the
        silhouette's centroid.
    rng
        The source of all randomness: the same generator state gives the same image.
    colour
        (H, W, 3) RGB instead of (H, W) grey.

    Returns
    -------
    image : float32 array in [0, 1]
    mask : bool array (H, W), the particle's true silhouette
    """
    if morphotype not in MORPHOTYPES:
        raise InvalidInput(f"unknown morphotype {morphotype!r}; expected one of {MORPHOTYPES}")
    side = round(CROP_MARGIN / 2 * size_px)
    particle = make_particle(morphotype, rng)
    rendered = draw_particle(
        particle,
        side=side,
        radius_px=size_px / 2,
        rng=rng,
        lighting=Lighting.random(rng),
        colour=colour,
    )
    image = tray_background((side, side), rng, colour=colour)
    composite(image, rendered)
    blur = rng.uniform(0.3, 0.7)
    return add_sensor_noise(optical_blur(image, blur), rng), rendered.mask
