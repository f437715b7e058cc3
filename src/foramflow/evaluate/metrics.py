"""Classification metrics on the validation split (method §6)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1/support, and their unweighted means over classes.

    The means over classes (macro) weigh a rare species as much as a common one, which is
    what matters when the rare ones are the palaeoclimate signal.
    """
    labels = np.arange(len(classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    }
    return {
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "n_images": len(y_true),
        "per_class": per_class,
    }


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts: rows are the true class, columns the predicted class."""
    return confusion_matrix(y_true, y_pred, labels=np.arange(n_classes))


def confusion_frame(matrix: np.ndarray, classes: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(matrix, index=classes, columns=classes)
    frame.index.name = "true_class"  # rows true, columns predicted
    return frame


def per_class_frame(metrics: dict) -> pd.DataFrame:
    frame = pd.DataFrame.from_dict(metrics["per_class"], orient="index")
    frame.index.name = "class"
    return frame


def worst_confusions(matrix: np.ndarray, classes: list[str], k: int = 10) -> list[dict]:
    """The k largest off-diagonal cells: which true class is most often taken for which."""
    off = matrix.astype(float).copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:k]
    rows, cols = np.unravel_index(order, off.shape)
    support = matrix.sum(axis=1)
    return [
        {
            "true": classes[r],
            "predicted": classes[c],
            "count": int(matrix[r, c]),
            "share_of_true": float(matrix[r, c] / support[r]) if support[r] else 0.0,
        }
        for r, c in zip(rows, cols)
        if off[r, c] > 0
    ]
