"""The demo's own figures: focus stacking, segmentation, crops and the core's confusions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from foramflow.io.images import read_image


def save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def plot_stack(
    planes: np.ndarray,
    fused: np.ndarray,
    true_depth_um: np.ndarray,
    depth_um: np.ndarray,
    *,
    best_plane: int,
) -> Figure:
    """The sharpest single plane, the fused image, and the true and recovered surface height."""
    vmax = float(max(true_depth_um.max(), 1.0))
    panels = [
        (planes[best_plane], f"best single plane ({best_plane + 1} of {len(planes)})", "gray"),
        (fused, "fused (focus stacking)", "gray"),
        (true_depth_um, "true surface height (µm)", "viridis"),
        (depth_um, "height from focus (µm)", "viridis"),
    ]
    fig = Figure(figsize=(14, 3.9), layout="constrained")
    axes = fig.subplots(1, 4)
    for ax, (image, title, cmap) in zip(axes, panels):
        grey = cmap == "gray"
        shown = ax.imshow(
            image, cmap=cmap, vmin=0, vmax=1 if grey else vmax, interpolation="nearest"
        )
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
        if not grey:
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
    return fig


def plot_segmentation(image: np.ndarray, particles: pd.DataFrame, truth: pd.DataFrame) -> Figure:
    """A tray image with every crop square: green when it matches a true particle, red if not;
    true particles that no crop found are circled in orange."""
    fig = Figure(figsize=(7.5, 7.5), layout="constrained")
    ax = fig.subplots()
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    for row in particles.itertuples():
        colour = "tab:green" if row.truth_id >= 0 else "tab:red"
        ax.add_patch(
            Rectangle(
                (row.crop_left_px - 0.5, row.crop_top_px - 0.5),
                row.crop_side_px,
                row.crop_side_px,
                fill=False,
                edgecolor=colour,
                linewidth=1.0,
            )
        )
        label = row.true_class or "no match"
        ax.text(row.crop_left_px, row.crop_top_px - 4, label, color=colour, fontsize=6)
    missed = truth[~truth["id"].isin(particles["truth_id"])]
    ax.scatter(
        missed["x"], missed["y"], s=300, facecolors="none", edgecolors="orange", linewidths=1.5
    )
    ax.set_title(f"{len(particles)} crops; true particles missed: {len(missed)}", fontsize=10)
    ax.set_axis_off()
    return fig


def plot_crop_gallery(crops_dir: Path, crops: pd.DataFrame, *, per_class: int = 10) -> Figure:
    """A row of segmented crops per true class, as the classifier sees them."""
    classes = sorted(c for c in crops["true_class"].unique() if c)
    fig = Figure(figsize=(1.1 * per_class + 1.4, 1.1 * len(classes) + 0.3), layout="constrained")
    axes = fig.subplots(max(1, len(classes)), per_class, squeeze=False)
    for row, name in zip(axes, classes):
        paths = crops.loc[crops["true_class"] == name, "path"].head(per_class)
        for ax in row:
            ax.set_axis_off()
        for ax, path in zip(row, paths):
            ax.imshow(read_image(crops_dir / path), cmap="gray", vmin=0, vmax=1)
        row[0].text(-0.1, 0.5, name, transform=row[0].transAxes, ha="right", va="center")
    return fig


def plot_core_confusion(matrix: pd.DataFrame) -> Figure:
    """Row-normalised true (rows) × predicted (columns, with ``unsure``) table of core crops."""
    counts = matrix.to_numpy()
    support = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, support, out=np.zeros(counts.shape), where=support > 0)
    fig = Figure(figsize=(max(5.0, 2.0 + 0.75 * matrix.shape[1]), 1.6 + 0.6 * matrix.shape[0]))
    ax = fig.subplots()
    shown = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(matrix.shape[1]), matrix.columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(matrix.shape[0]), matrix.index, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    for (r, c), value in np.ndenumerate(counts):
        if value:
            colour = "white" if shares[r, c] > 0.5 else "black"
            ax.text(c, r, int(value), ha="center", va="center", fontsize=7, color=colour)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_title("Every crop of the core: true against predicted class", fontsize=10)
    fig.tight_layout()
    return fig
