"""Evaluate a model bundle on labelled, preprocessed images, and write the run's outputs.

Metrics are computed from the exported bundle itself (ONNX Runtime), so they describe
exactly the model that users will classify with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from foramflow.evaluate.metrics import (
    classification_metrics,
    confusion,
    confusion_frame,
    per_class_frame,
    worst_confusions,
)
from foramflow.evaluate.plots import plot_confusion, plot_training_curves
from foramflow.evaluate.report import (
    confusion_examples,
    example_images,
    png_data_uri,
    write_report,
)
from foramflow.io.bundle import Bundle


@dataclass
class Evaluation:
    probabilities: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    metrics: dict
    confusion: np.ndarray
    inference_ms_per_image: float


def evaluate_bundle(
    bundle: Bundle, images: np.ndarray, y_true: np.ndarray, *, batch_size: int = 64
) -> Evaluation:
    """Run ``bundle`` over preprocessed ``images`` (N, C, S, S) with known labels."""
    classes = bundle.labels
    bundle.predict_batch(np.asarray(images[:batch_size], dtype=np.float32))  # warm-up
    start = time.perf_counter()
    chunks = [
        bundle.predict_batch(np.asarray(images[i : i + batch_size], dtype=np.float32))
        for i in range(0, len(images), batch_size)
    ]
    elapsed = time.perf_counter() - start
    probabilities = np.concatenate(chunks) if chunks else np.zeros((0, len(classes)))
    y_pred = probabilities.argmax(axis=1)
    return Evaluation(
        probabilities=probabilities,
        y_true=np.asarray(y_true),
        y_pred=y_pred,
        metrics=classification_metrics(y_true, y_pred, classes),
        confusion=confusion(y_true, y_pred, len(classes)),
        inference_ms_per_image=1000.0 * elapsed / max(1, len(images)),
    )


def write_evaluation(
    out_dir: str | Path,
    evaluation: Evaluation,
    images: np.ndarray,
    *,
    classes: list[str],
    title: str,
    bundle_path: str | Path,
    created: str,
    versions: dict,
    summary: list[tuple[str, str]],
    train_counts: np.ndarray | None = None,
    log: pd.DataFrame | None = None,
    dropped: dict | None = None,
    min_per_class: int | None = None,
    skipped: dict | None = None,
    config_text: str = "",
) -> Path:
    """Write metrics tables, figures and ``report.html`` into ``out_dir``; return the report."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    confusion_frame(evaluation.confusion, classes).to_csv(out_dir / "confusion_matrix.csv")
    per_class_frame(evaluation.metrics).to_csv(out_dir / "per_class_metrics.csv")
    plot_confusion(evaluation.confusion, classes, out_dir / "confusion_matrix.png")
    curves = None
    if log is not None and len(log):
        plot_training_curves(log, out_dir / "training_curves.png")
        curves = png_data_uri(out_dir / "training_curves.png")
    worst = worst_confusions(evaluation.confusion, classes)
    per_class = [
        {
            "name": name,
            **evaluation.metrics["per_class"][name],
            "train_count": int(train_counts[i]) if train_counts is not None else "",
        }
        for i, name in enumerate(classes)
    ]
    return write_report(
        out_dir / "report.html",
        title=title,
        created=created,
        versions=versions,
        bundle_path=str(bundle_path),
        summary=summary,
        metrics=evaluation.metrics,
        per_class=per_class,
        confusion_png=png_data_uri(out_dir / "confusion_matrix.png"),
        curves_png=curves,
        confusions=confusion_examples(images, evaluation.y_true, evaluation.y_pred, classes, worst),
        examples=example_images(images, evaluation.y_true, evaluation.y_pred, classes),
        dropped=dropped or {},
        min_per_class=min_per_class,
        skipped=sorted((str(p), r) for p, r in (skipped or {}).items()),
        config_text=config_text,
    )
