"""Evaluate a model bundle on labelled, preprocessed images, and write the run's outputs.

Metrics are computed from the exported bundle itself, run by the engine ``classify`` runs
(fp32, in batches of classify's size), so that they, and the inference time per image,
describe exactly the model and the speed that users will classify with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from foramflow.bundle.engine import Engine
from foramflow.bundle.folder import Bundle
from foramflow.bundle.predict import DEFAULT_BATCH_SIZE, predict_timed
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


@dataclass
class Evaluation:
    probabilities: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    metrics: dict
    confusion: np.ndarray
    inference_ms_per_image: float
    inference_setup: str  # how the time was measured

    @property
    def inference_summary(self) -> str:
        """The inference time as reports state it, with how it was measured."""
        return f"{self.inference_ms_per_image:.2f} ms per image ({self.inference_setup})"


#: The label of the inference time in reports.
INFERENCE_LABEL = "inference (the classify engine)"


def evaluation_engine(bundle: Bundle) -> Engine:
    """The engine classify runs, in fp32 (opened and checked against model.json here)."""
    return Engine(bundle, precision="fp32")


def evaluate_bundle(
    engine: Engine, images: np.ndarray, y_true: np.ndarray, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> Evaluation:
    """Run the bundle's ``engine`` over preprocessed ``images`` (N, C, S, S) with known
    labels, timing it as classify runs it."""
    classes = engine.bundle.labels
    timed = predict_timed(engine, images, batch_size=batch_size)
    y_pred = timed.probabilities.argmax(axis=1)
    return Evaluation(
        probabilities=timed.probabilities,
        y_true=np.asarray(y_true),
        y_pred=y_pred,
        metrics=classification_metrics(y_true, y_pred, classes),
        confusion=confusion(y_true, y_pred, len(classes)),
        inference_ms_per_image=timed.ms_per_image,
        inference_setup=f"{timed.engine}, batches of {timed.batch_size}",
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
    from foramflow.io.tables import write_csv

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(
        confusion_frame(evaluation.confusion, classes), out_dir / "confusion_matrix.csv", index=True
    )
    write_csv(per_class_frame(evaluation.metrics), out_dir / "per_class_metrics.csv", index=True)
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
