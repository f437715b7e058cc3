"""Stacking and segmentation on real images, with figures to look at.

    .venv/bin/python benchmarks/real_imaging.py

Needs ../shared/data (or $FORAMFLOW_SHARED_DATA); writes to benchmarks/results/:

- ``tray_<name>.png``: each of the four tray photos of ``rcos_bones_rocks`` with the outline
  and number of every particle found, beside a contact sheet of its crops. The photos carry
  no scale; particles are about 2 mm, so 20 px/mm is assumed, and regions under 0.2 mm² are
  dropped (fabric glints).
- ``zstack_<object>.png``: the fused image of each AutoMorph Z-stack (31 planes) beside the
  commercial stacker's ``ZS.tif``, AutoMorph's extended-depth-of-field image and the plane
  sharpest on the particle, with the sharpness of each (variance of the Laplacian of
  Gaussian, σ = 1 px, over the whole frame and inside the particle), and our depth map.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from skimage.segmentation import find_boundaries

from foramflow.cli import app
from foramflow.imaging.segment import segment_image
from foramflow.imaging.stack import fuse_stack, sharpness
from foramflow.io.images import read_image

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED = Path(os.environ.get("FORAMFLOW_SHARED_DATA", ROOT.parent / "shared" / "data"))
TRAY_PIXELS_PER_MM = 20.0
TRAY_MIN_AREA_UM2 = 200_000.0


def contact_sheet(crops: list[np.ndarray], *, tile: int = 96, columns: int = 6) -> np.ndarray:
    rows = int(np.ceil(len(crops) / columns))
    sheet = np.ones((rows * tile, columns * tile, 3), dtype=np.float32)
    for index, crop in enumerate(crops):
        from skimage.transform import resize

        crop = crop if crop.ndim == 3 else np.repeat(crop[..., None], 3, axis=-1)
        small = resize(crop, (tile - 4, tile - 4), anti_aliasing=True)
        row, column = divmod(index, columns)
        sheet[
            row * tile + 2 : (row + 1) * tile - 2, column * tile + 2 : (column + 1) * tile - 2
        ] = small
    return sheet


def trays() -> None:
    folder = SHARED / "rcos_bones_rocks" / "multi_particle_slides"
    crops_dir = RESULTS / "real_tray_crops"
    args = ["segment", str(folder), "--out", str(crops_dir)]
    args += ["--pixels-per-mm", str(TRAY_PIXELS_PER_MM), "--min-area-um2", str(TRAY_MIN_AREA_UM2)]
    print("foramflow " + " ".join(args))
    start = time.perf_counter()
    app(args, standalone_mode=False)
    print(f"segmented 4 trays in {time.perf_counter() - start:.1f} s (crops written)")
    table = pd.read_parquet(crops_dir / "morphometrics.parquet")
    rejected = pd.read_csv(crops_dir / "rejected.csv")
    for source, particles in table.groupby("source"):
        name = Path(source).stem
        image = read_image(source)
        labels = segment_image(
            image, pixels_per_mm=TRAY_PIXELS_PER_MM, min_area_um2=TRAY_MIN_AREA_UM2
        )["labels"]
        overlay = image.copy()
        overlay[find_boundaries(labels)] = (1.0, 0.1, 0.1)
        crops = [read_image(crops_dir / p) for p in particles.path]
        dropped = rejected[rejected.source == source].reason.value_counts().to_dict()
        figure, (left, right) = plt.subplots(
            1, 2, figsize=(14, 8), gridspec_kw={"width_ratios": [1, 1.2]}
        )
        left.imshow(overlay)
        for number, row in enumerate(particles.itertuples(), start=1):
            left.text(
                row.centroid_x_px + 25, row.centroid_y_px, str(number), color="yellow", fontsize=7
            )
        left.set_title(
            f"{name}: {len(particles)} particles ({int(particles.touching.sum())} flagged touching)"
        )
        right.imshow(contact_sheet(crops))
        right.set_title(f"crops (side 2.2·r), in table order; dropped: {dropped or 'none'}")
        for axis in (left, right):
            axis.axis("off")
        figure.tight_layout()
        figure.savefig(RESULTS / f"tray_{name}.png", dpi=90)
        plt.close(figure)
        print(
            f"{name}: {len(particles)} particles, {int(particles.touching.sum())} touching, "
            f"median diameter {particles.equivalent_diameter_um.median() / 1000:.2f} mm, "
            f"dropped {dropped}"
        )


def particle_region(image: np.ndarray) -> np.ndarray:
    """The largest particle of a fused image, as a mask, to score sharpness on the specimen."""
    result = segment_image(image, pixels_per_mm=1000.0, min_area_um2=10_000)
    largest = result["particles"].sort_values("area_um2").label.iloc[-1]
    return result["labels"] == largest


def zstacks() -> None:
    base = SHARED / "automorph_zstack" / "run3d" / "final"
    for folder in sorted((base / "stripped").glob("IP.*")):
        name = folder.name
        planes = np.stack([read_image(p) for p in sorted(folder.glob("*_plane*.jpg"))])
        start = time.perf_counter()
        result = fuse_stack(planes)
        seconds = time.perf_counter() - start
        fused = result["image"]
        commercial = read_image(folder / "ZS.tif")
        edf = read_image(base / "focused" / f"{name}_edf.jpg")[: fused.shape[0]]
        region = particle_region(fused)
        sharpest = planes[int(np.argmax([sharpness(p, mask=region) for p in planes]))]
        panels = {
            "foramflow stack": fused,
            "commercial stacker (ZS.tif)": commercial,
            "AutoMorph EDF": edf,
            "sharpest plane (on the particle)": sharpest,
        }
        figure, axes = plt.subplots(1, 5, figsize=(25, 5.2))
        print(
            f"{name}: {len(planes)} planes {planes.shape[1]}×{planes.shape[2]}, "
            f"fused in {seconds:.1f} s, max shift {np.abs(result['shifts']).max():.1f} px"
        )
        for axis, (title, image) in zip(axes, panels.items(), strict=False):
            whole = sharpness(image)
            inside = sharpness(image, mask=region)
            axis.imshow(image)
            axis.set_title(
                f"{title}\nsharpness {whole * 1e5:.2f} (frame), {inside * 1e5:.2f} (particle)"
            )
            axis.axis("off")
            print(
                f"  {title:<28} sharpness ×1e5: frame {whole * 1e5:6.2f}, "
                f"particle {inside * 1e5:6.2f}"
            )
        depth = axes[4].imshow(result["depth_index"], cmap="viridis")
        axes[4].set_title("foramflow depth map (plane index)")
        axes[4].axis("off")
        figure.colorbar(depth, ax=axes[4], fraction=0.046)
        figure.tight_layout()
        figure.savefig(RESULTS / f"zstack_{name}.png", dpi=80)
        plt.close(figure)


def main() -> None:
    if not SHARED.is_dir():
        raise SystemExit(f"real data not found at {SHARED} (set FORAMFLOW_SHARED_DATA)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    trays()
    zstacks()


if __name__ == "__main__":
    main()
