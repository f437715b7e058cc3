"""FlowCam export folders written by tests: collages with particles at known boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

FIELDS = ["id", "collage_file", "image_x", "image_y", "image_w", "image_h", "abd_diameter"]


def write_export(folder: Path, particles: list[dict], collages: dict[str, np.ndarray]) -> Path:
    """An export folder: the collages as TIFF and a .lst file listing ``particles``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, pixels in collages.items():
        Image.fromarray(pixels).save(folder / name)
    header = ["016", f"num-fields|{len(FIELDS)}"]
    header += [f"{name}|{'string' if name == 'collage_file' else 'int32'}" for name in FIELDS]
    rows = ["|".join(str(p[name]) for name in FIELDS) for p in particles]
    (folder / "run.lst").write_text("\n".join(header + rows) + "\n")
    return folder


def known_export(folder: Path) -> tuple[Path, list[dict], dict[int, np.ndarray]]:
    """Two collages, five particles of distinct random pixels at known boxes."""
    rng = np.random.default_rng(7)
    collages = {
        "run_000001.tif": np.zeros((120, 200), np.uint8),
        "run_000002.tif": np.zeros((90, 90), np.uint8),
    }
    boxes = [
        ("run_000001.tif", 0, 0, 40, 30),
        ("run_000001.tif", 45, 0, 25, 60),
        ("run_000001.tif", 150, 70, 50, 50),  # touching the right and bottom edges
        ("run_000002.tif", 10, 10, 33, 17),
        ("run_000002.tif", 50, 40, 40, 50),
    ]
    particles, truth = [], {}
    for number, (name, x, y, w, h) in enumerate(boxes, start=1):
        pixels = rng.integers(1, 256, (h, w), dtype=np.uint8)
        collages[name][y : y + h, x : x + w] = pixels
        truth[number] = pixels
        particles.append(
            {"id": number, "collage_file": name, "image_x": x, "image_y": y}
            | {"image_w": w, "image_h": h, "abd_diameter": 10}
        )
    return write_export(folder, particles, collages), particles, truth
