"""Figures of a training run: confusion matrix and training curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def plot_confusion(matrix: np.ndarray, classes: list[str], path: str | Path) -> None:
    """Row-normalised confusion matrix (recall on the diagonal), counts in small classes."""
    n = len(classes)
    support = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, support, out=np.zeros_like(matrix, float), where=support > 0)
    side = min(40.0, max(5.0, 0.28 * n + 2.5))
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=90, fontsize=max(4, min(9, 300 / n)))
    ax.set_yticks(range(n), classes, fontsize=max(4, min(9, 300 / n)))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= 25:
        for r in range(n):
            for c in range(n):
                if matrix[r, c]:
                    colour = "white" if normalised[r, c] > 0.5 else "black"
                    ax.text(
                        c, r, int(matrix[r, c]), ha="center", va="center", fontsize=7, color=colour
                    )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_title("Validation confusion matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_training_curves(log: pd.DataFrame, path: str | Path) -> None:
    """Loss, accuracy and learning rate per epoch from a run's log.csv."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    axes[0].plot(log["epoch"], log["train_loss"], label="training")
    axes[0].plot(log["epoch"], log["val_loss"], label="validation")
    axes[0].set_ylabel("cross-entropy loss")
    axes[1].plot(log["epoch"], log["train_accuracy"], label="training (augmented)")
    axes[1].plot(log["epoch"], log["val_accuracy"], label="validation")
    axes[1].set_ylabel("accuracy")
    axes[1].set_ylim(0, 1)
    axes[2].plot(log["epoch"], log["learning_rate"])
    axes[2].set_yscale("log")
    axes[2].set_ylabel("learning rate")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
