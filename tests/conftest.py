"""Shared fixtures: the optional real-data folder and small generated image sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The real-image folder: $FORAMFLOW_SHARED_DATA or ../shared/data beside the checkout."""
    return Path(os.environ.get("FORAMFLOW_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """Path to ../shared/data; skips the test when the folder is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data not available at {path} (set FORAMFLOW_SHARED_DATA)")
    return path


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


@pytest.fixture(scope="session")
def shape_set(tmp_path_factory) -> Path:
    """40 images each of three shape classes (32×32 PNG), shared by the whole session."""
    return write_shape_set(tmp_path_factory.mktemp("shapes"))
