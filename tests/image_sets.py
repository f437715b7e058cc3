"""Small generated image sets with known classes, shared by tests of several areas."""

from __future__ import annotations

from pathlib import Path


def write_shape_set(root: Path, *, n_per_class: int = 40, size: int = 32, seed: int = 0) -> Path:
    """A tiny learnable folder-per-class set: bright discs, rings and bars on a dark, noisy
    background, at random positions, sizes and angles. Returns ``root``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for name in ("bar", "disc", "ring"):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            cy, cx = rng.uniform(0.4, 0.6, 2) * size
            r = rng.uniform(0.22, 0.32) * size
            d = np.hypot(yy - cy, xx - cx)
            if name == "disc":
                shape = d < r
            elif name == "ring":
                shape = (d < r) & (d > 0.6 * r)
            else:
                angle = rng.uniform(0, np.pi)
                along = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
                across = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
                shape = (np.abs(along) < r) & (np.abs(across) < 0.25 * r)
            image = 0.1 + 0.7 * shape + rng.normal(0, 0.05, (size, size))
            pixels = (np.clip(image, 0, 1) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}_{i:03d}.png")
    return root
