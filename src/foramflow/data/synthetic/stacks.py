"""Z-stacks: one tray scene seen at several focal planes, with the true surface height.

Each pixel is sharp in the plane at its own height and blurs as the plane moves away: a
Gaussian whose sigma grows linearly with the defocus beyond half the depth of field. The blur
is gathered per pixel from a few pre-blurred copies of the sharp image (interpolated between
the two nearest blur levels), which is fast and good enough to test focus stacking against.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import tifffile

from foramflow.data.synthetic.files import save_labels, save_png
from foramflow.data.synthetic.particles import add_sensor_noise, optical_blur
from foramflow.data.synthetic.slides import PIXEL_SIZE_UM, draw_scene
from foramflow.data.synthetic.training import check_classes


class ZStack(NamedTuple):
    """Focal planes and their truth.

    ``planes`` (P, H, W) or (P, H, W, 3) float32; ``sharp`` the all-in-focus image without
    noise; ``depth_um`` (H, W) the height above the tray of the surface seen at each pixel,
    i.e. the focal position where it is sharp (0 on the tray); ``plane_z_um`` (P,) the
    focal position of each plane; ``truth`` and ``labels`` as for a slide.
    """

    planes: np.ndarray
    sharp: np.ndarray
    depth_um: np.ndarray
    plane_z_um: np.ndarray
    plane_spacing_um: float
    truth: pd.DataFrame
    labels: np.ndarray


def make_zstack(
    *,
    n_particles: int = 8,
    shape: tuple[int, int] | None = None,
    classes: Sequence[str] | None = None,
    pixel_size_um: float = PIXEL_SIZE_UM,
    plane_spacing_um: float = 70.0,
    n_planes: int | None = None,
    depth_of_field_um: float = 90.0,
    defocus_blur: float = 0.15,
    colour: bool = False,
    seed: int | np.random.Generator = 0,
) -> ZStack:
    """Render a tray scene at focal planes ``plane_spacing_um`` apart from the tray up.

    Parameters
    ----------
    n_particles, shape, classes, pixel_size_um, colour, seed
        The scene, as for :func:`make_slide`.
    plane_spacing_um, depth_of_field_um
        Focal step and depth of field (70 µm and 90 µm in Marchant et al. 2020).
    n_planes
        By default enough planes to reach the top of the highest particle.
    defocus_blur
        Gaussian sigma (µm) per µm of defocus beyond half the depth of field; about the
        numerical aperture of the objective.
    """
    rng = np.random.default_rng(seed)
    classes = check_classes(classes)
    names = [str(c) for c in rng.choice(classes, size=n_particles)]
    scene = draw_scene(names, shape=shape, pixel_size_um=pixel_size_um, colour=colour, rng=rng)
    depth = scene.height_um
    if n_planes is None:
        n_planes = int(np.ceil(depth.max() / plane_spacing_um)) + 1
    plane_z = np.arange(n_planes) * plane_spacing_um
    blurred = _BlurLevels(scene.clean)
    planes = []
    for z in plane_z:
        defocus = np.maximum(np.abs(depth - z) - depth_of_field_um / 2, 0)
        planes.append(add_sensor_noise(blurred.at(defocus * defocus_blur / pixel_size_um), rng))
    return ZStack(
        planes=np.stack(planes),
        sharp=scene.clean,
        depth_um=depth,
        plane_z_um=plane_z,
        plane_spacing_um=float(plane_spacing_um),
        truth=scene.truth,
        labels=scene.labels,
    )


class _BlurLevels:
    """Copies of one image blurred at sigmas 0, 0.5, 1, 2, 4 … pixels, made when first needed."""

    def __init__(self, image: np.ndarray):
        self.image = image
        self.copies: dict[int, np.ndarray] = {}

    def _level(self, k: int) -> np.ndarray:
        if k not in self.copies:
            sigma = 0.0 if k == 0 else 0.25 * 2.0**k
            self.copies[k] = optical_blur(self.image, sigma) if sigma else self.image
        return self.copies[k]

    def at(self, sigma: np.ndarray) -> np.ndarray:
        """The image with a per-pixel blur ``sigma`` (pixels), interpolated between levels."""
        # Level k has sigma 0.25·2^k (k ≥ 1); a fractional level interpolates linearly.
        level = np.where(sigma > 0.5, np.log2(np.maximum(sigma, 0.5) / 0.25), sigma / 0.5)
        low = np.floor(level).astype(int)
        weight = (level - low).astype(np.float32)
        if self.image.ndim == 3:
            weight = weight[..., None]
        out = np.zeros_like(self.image)
        for k in np.unique(low):
            where = low == k
            mixed = (1 - weight) * self._level(k) + weight * self._level(k + 1)
            out[where] = mixed[where]
        return out


def save_zstack(stack: ZStack, out_dir: str | Path) -> list[Path]:
    """Write ``plane_NN.png`` per plane, ``sharp.png``, ``depth_um.tif`` (float32),
    ``labels.png``, ``planes.csv`` (file, z_um) and ``truth.csv`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [f"plane_{i:02d}.png" for i in range(len(stack.planes))]
    for name, plane in zip(names, stack.planes, strict=True):
        save_png(out_dir / name, plane)
    save_png(out_dir / "sharp.png", stack.sharp)
    tifffile.imwrite(out_dir / "depth_um.tif", stack.depth_um.astype(np.float32))
    save_labels(out_dir / "labels.png", stack.labels)
    pd.DataFrame({"file": names, "z_um": stack.plane_z_um}).to_csv(
        out_dir / "planes.csv", index=False
    )
    stack.truth.to_csv(out_dir / "truth.csv", index=False)
    return [out_dir / n for n in names]
