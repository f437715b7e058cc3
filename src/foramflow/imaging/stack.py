"""Focus stacking: fuse a Z-stack of focal planes into one all-in-focus image (method §1).

The method, in three steps:

1. **Align** the planes (translation, sub-pixel phase correlation between neighbouring
   planes, which look alike even when the stack is deep).
2. **Depth from focus**: a focus measure (local energy of the Laplacian of Gaussian) per
   plane; the sharpest plane per pixel, refined between planes by a Gaussian fit; then
   regularised by normalised convolution weighted by focus contrast, so that pixels with
   no texture of their own — the dark tray around a bright particle — take the depth of
   the sharp edges near them instead of the plane where the particle's defocused glow is
   strongest. That is what removes the halos of plain per-pixel or per-coefficient
   maximum selection.
3. **Fuse** the planes by Laplacian-pyramid blending (Burt & Adelson 1983) with weights
   that pick the planes at the regularised depth: fine detail comes from the sharp
   plane, and the seams between regions of different depth are blended at every scale.

Everything works on float images in [0, 1], grey (H, W) or colour (H, W, 3), stacked
along a first plane axis.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from foramflow.errors import InvalidInput
from foramflow.imaging.preprocess import to_channels


def luma(image: np.ndarray) -> np.ndarray:
    """Grey (H, W) view of a grey or colour image."""
    return image if image.ndim == 2 else to_channels(image, 1)[..., 0]


def focus_measure(image: np.ndarray, *, sigma: float = 1.0, window: float = 2.0) -> np.ndarray:
    """Local focus energy: the squared Laplacian of Gaussian, averaged over a Gaussian window.

    ``sigma`` (px) sets the detail scale that counts as "in focus"; ``window`` (px) the
    neighbourhood over which its energy is pooled.
    """
    response = ndi.gaussian_laplace(luma(image).astype(np.float32), sigma)
    return ndi.gaussian_filter(response * response, window)


def sharpness(image: np.ndarray, *, sigma: float = 1.0, mask: np.ndarray | None = None) -> float:
    """Sharpness score: variance of the Laplacian of Gaussian of the luma.

    The usual "variance of the Laplacian" focus score (Pech-Pacheco et al. 2000), with a
    small Gaussian (``sigma`` px) so that pixel noise and JPEG blocks count less than detail;
    over the whole image, or over ``mask`` (e.g. the particle) only.
    """
    response = ndi.gaussian_laplace(luma(image).astype(np.float32), sigma)
    return float(np.var(response if mask is None else response[mask]))


def plane_shifts(planes: np.ndarray, *, upsample_factor: int = 4) -> np.ndarray:
    """Shift (dy, dx) in px that aligns each plane with the middle plane, shape (P, 2).

    Neighbouring planes are registered by phase correlation (to 1/``upsample_factor`` px)
    and the steps are chained outward from the middle plane.
    """
    from skimage.registration import phase_cross_correlation

    spectra = [np.fft.fft2(luma(plane)) for plane in planes]
    middle = len(spectra) // 2
    shifts = np.zeros((len(spectra), 2))

    def step(reference: int, moving: int) -> np.ndarray:
        return phase_cross_correlation(
            spectra[reference],
            spectra[moving],
            upsample_factor=upsample_factor,
            space="fourier",
            normalization=None,
        )[0]

    for index in range(middle + 1, len(spectra)):
        shifts[index] = shifts[index - 1] + step(index - 1, index)
    for index in range(middle - 1, -1, -1):
        shifts[index] = shifts[index + 1] + step(index + 1, index)
    return shifts


def shift_planes(planes: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Translate each plane by its (dy, dx); edges are filled with the nearest pixel."""
    aligned = planes.copy()
    for index, (dy, dx) in enumerate(shifts):
        if dy or dx:
            offset = (dy, dx) + (0,) * (planes.ndim - 3)
            aligned[index] = ndi.shift(planes[index], offset, order=1, mode="nearest")
    return aligned


def depth_from_focus(
    focus: np.ndarray, *, noise_factor: float = 5.0, smoothing: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel depth (fractional plane index) from a (P, H, W) focus-measure stack.

    The sharpest plane is refined by fitting a Gaussian through it and its two neighbours
    (Nayar & Nakagawa 1994). Its focus contrast (best minus median plane) says how much
    to trust it: pixels whose contrast is below ``noise_factor`` × the image's median
    contrast have no detail of their own — the dark tray, the inside of an aperture — and
    there the brightest defocused glow, whose noise is strongest, would win. They take
    instead the depth of the confident pixels around them, at any distance, by push-pull
    interpolation (Gortler et al. 1996). A Gaussian of ``smoothing`` px ends the job.

    Returns ``(depth, confidence)``, both (H, W) float32, confidence in [0, 1].
    """
    n_planes = focus.shape[0]
    best = np.argmax(focus, axis=0)
    log_focus = np.log(focus + np.finfo(np.float32).tiny)
    below = np.take_along_axis(log_focus, np.clip(best - 1, 0, n_planes - 1)[None], 0)[0]
    at = np.take_along_axis(log_focus, best[None], 0)[0]
    above = np.take_along_axis(log_focus, np.clip(best + 1, 0, n_planes - 1)[None], 0)[0]
    curvature = below - 2 * at + above
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(curvature < 0, 0.5 * (below - above) / curvature, 0.0)
    interior = (best > 0) & (best < n_planes - 1)
    raw_depth = best + np.where(interior, np.clip(offset, -0.5, 0.5), 0.0)

    typical = np.median(focus, axis=0)
    contrast = np.take_along_axis(focus, best[None], 0)[0] - typical
    threshold = max(noise_factor * float(np.median(typical)), np.finfo(np.float32).tiny)
    confidence = np.clip(contrast / threshold - 1.0, 0.0, 1.0)
    depth = ndi.gaussian_filter(_push_pull(raw_depth, confidence), smoothing)
    return depth.astype(np.float32), confidence.astype(np.float32)


def _push_pull(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Fill pixels of weight < 1 from their neighbours, coarse to fine (weights in [0, 1])."""
    from skimage.transform import resize

    if min(values.shape) <= 1 or weights.min() >= 1:
        return values
    height, width = values.shape
    pad = ((0, height % 2), (0, width % 2))
    blocks = (height // 2 + height % 2, 2, width // 2 + width % 2, 2)
    block_w = np.pad(weights, pad).reshape(blocks).sum(axis=(1, 3))
    block_wv = np.pad(weights * values, pad).reshape(blocks).sum(axis=(1, 3))
    coarse = _push_pull(block_wv / np.maximum(block_w, np.finfo(np.float32).tiny), block_w / 4.0)
    upsampled = resize(coarse, values.shape, order=1, mode="edge", anti_aliasing=False)
    return weights * values + (1.0 - weights) * upsampled


def fuse_stack(
    planes: np.ndarray,
    *,
    align: bool = True,
    focus_sigma: float = 1.0,
    focus_window: float = 2.0,
    noise_factor: float = 5.0,
    depth_smoothing: float = 2.0,
    plane_spacing_um: float | None = None,
) -> dict:
    """Fuse a Z-stack (P, H, W) or (P, H, W, 3), planes in focus order, into one image.

    Parameters
    ----------
    planes : float array in [0, 1], one focal plane per first-axis index.
    align : register the planes by translation first.
    focus_sigma, focus_window : see :func:`focus_measure` (px).
    depth_smoothing : width (px) of the depth regularisation; make it about the blur
        radius of the most defocused plane around a particle to avoid halos.
    plane_spacing_um : distance between planes; gives the depth map in µm.

    Returns
    -------
    dict with ``image`` (fused, same shape as one plane, float32 in [0, 1]),
    ``depth_index`` (H, W, fractional index of the sharpest plane), ``depth_um``
    (H, W, or None without a plane spacing), ``shifts`` (P, 2, px applied to each plane)
    and ``sharpness`` (of the fused image, :func:`sharpness`).
    """
    planes = np.asarray(planes, dtype=np.float32)
    if planes.ndim not in (3, 4) or planes.shape[0] < 2:
        raise InvalidInput(f"expected a stack of at least 2 planes, got shape {planes.shape}")
    shifts = plane_shifts(planes) if align else np.zeros((planes.shape[0], 2))
    if np.any(shifts):
        planes = shift_planes(planes, shifts)

    focus = np.stack([focus_measure(p, sigma=focus_sigma, window=focus_window) for p in planes])
    depth, _ = depth_from_focus(focus, noise_factor=noise_factor, smoothing=depth_smoothing)
    del focus
    image = np.zeros(planes.shape[1:], dtype=np.float32)
    for index, plane in enumerate(planes):
        weight = np.clip(1.0 - np.abs(depth - index), 0.0, 1.0)
        image += (weight if plane.ndim == 2 else weight[..., None]) * plane
    return {
        "image": image,
        "depth_index": depth,
        "depth_um": None if plane_spacing_um is None else depth * np.float32(plane_spacing_um),
        "shifts": shifts,
        "sharpness": sharpness(image),
    }
