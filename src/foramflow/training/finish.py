"""After training: export the best network as a bundle, evaluate the bundle, write the report."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from foramflow.bundle.folder import Bundle, write_bundle
from foramflow.bundle.schema import (
    ONE_VIEW_BUNDLE,
    RUN_BUNDLE,
    PriorCorrection,
    TrainingInfo,
    TrainingSet,
    ValidationConfusion,
)
from foramflow.bundle.validation import ValidationSet, write_validation
from foramflow.data.dataset import ImageSet
from foramflow.data.split import loss_weights
from foramflow.evaluate.calibration import validation_calibration
from foramflow.evaluate.evaluation import (
    INFERENCE_LABEL,
    Evaluation,
    evaluate_bundle,
    evaluation_engine,
    write_evaluation,
)
from foramflow.evaluate.metrics import classification_metrics
from foramflow.imaging.preprocess import PreprocessSpec
from foramflow.io.files import write_json_atomic
from foramflow.progress import Progress
from foramflow.training.config import TrainConfig
from foramflow.training.export import onnx_bytes, training_meta
from foramflow.training.faster import (
    add_cascade,
    add_int8,
    cascade_row,
    cascade_stages,
    int8_row,
)
from foramflow.training.prior import as_trained, divide_out_class_weights
from foramflow.training.run_folder import CONFIG_FILE, LOG_FILE, METRICS_FILE


def export_and_evaluate(
    network: nn.Module,
    data,
    *,
    config: TrainConfig,
    out: Path,
    model_params: dict,
    train_counts: np.ndarray,
    state: dict,
    progress: Progress,
    one_view: nn.Module | None = None,
) -> Path:
    """Write ``out/bundle`` and ``out/evaluation``; return the path of the HTML report.

    ``one_view``: the same trained network reading each image once rather than in every
    turn, exported and evaluated as ``out/bundle_fast`` (a quarter of the work).

    The validation metrics and the inference time are those of the bundle run by the engine
    classify runs (fp32, classify's batch size)."""
    image_set: ImageSet = data.image_set
    spec = PreprocessSpec(size=config.input_size, channels=config.channels)
    weights = loss_weights(np.maximum(train_counts, 1), config.class_weights)
    weighted = not np.allclose(weights, 1.0)
    if weighted:  # one tail: this divides them out of ``one_view`` too
        divide_out_class_weights(network, weights)

    def export(module: nn.Module, folder: str, params: dict) -> tuple[Bundle, Evaluation]:
        meta = training_meta(
            name=out.name, model_name=config.model, model_params=params,
            labels=image_set.classes, spec=spec,
        )  # fmt: skip
        if weighted:
            meta = meta.merged(
                prior_correction=PriorCorrection(
                    class_weights={k: float(w) for k, w in zip(image_set.classes, weights)}
                )
            )
        bundle = Bundle.load(write_bundle(out / folder, meta, onnx_bytes(module, spec)))
        progress.message(f"Evaluating {folder}/ on the validation split …")
        evaluation = evaluate_bundle(
            evaluation_engine(bundle), data.images[data.val_index], data.labels[data.val_index]
        )
        write_validation(
            bundle.path,
            ValidationSet(labels=evaluation.y_true, probabilities=evaluation.probabilities),
            bundle.read_model(),
        )
        if weighted:
            evaluation.metrics["as_trained"] = as_trained_metrics(evaluation, weights, image_set)
        calibration = validation_calibration(evaluation.probabilities, evaluation.y_true)
        if calibration is not None:
            progress.message(
                f"Calibrated {folder}/ on the validation split: temperature "
                f"{calibration.temperature:.3f}, expected calibration error "
                f"{calibration.ece_before:.3f} → {calibration.ece_after:.3f}"
            )
        bundle.update(
            calibration=calibration,
            metrics=evaluation.metrics,
            validation_confusion=ValidationConfusion(
                labels=image_set.classes, matrix=evaluation.confusion.tolist()
            ),
            inference_ms_per_image=evaluation.inference_ms_per_image,
            training_set=_training_set(data, config),
            training=_training(state, config, n_train=len(data.train_index)),
        )
        return bundle, evaluation

    progress.message("Exporting the best network to ONNX …")
    bundle, evaluation = export(network, RUN_BUNDLE, model_params)
    summary = [*_summary(evaluation, data, config, model_params, state),
               *_calibration_rows(bundle)]  # fmt: skip
    cascade = None
    if one_view is not None:
        progress.message("Exporting the network reading each image once …")
        fast_bundle, fast = export(one_view, ONE_VIEW_BUNDLE, {**model_params, "cyclic": False})
        evaluation.metrics["one_view"] = _headline(fast)
        summary.append(_one_view_row(fast))
        int8 = add_int8(fast_bundle, data, fast, progress)
        if int8 is not None:
            progress.message(f"Running the int8 copy of {ONE_VIEW_BUNDLE}/ on every view …")
        stages = cascade_stages(
            fast_bundle, fast, int8, evaluation, data.images[data.val_index], network.views
        )
        cascade = add_cascade(
            bundle,
            stages,
            evaluation,
            network.views,
            fast_bundle.temperature,
            progress,
        )
        if cascade is not None:
            evaluation.metrics["cascade"] = cascade.to_json()
            summary.append(cascade_row(cascade))
    # the cascade is faster than the full network in int8, whose copy costs a minute to check
    int8 = add_int8(bundle, data, evaluation, progress) if cascade is None else None
    if int8 is not None:
        evaluation.metrics["int8"] = int8.record.to_json()
        summary.append(int8_row(int8.record))
    val_images = data.images[data.val_index]
    report = write_evaluation(
        out / "evaluation",
        evaluation,
        val_images,
        classes=image_set.classes,
        title=f"foramflow training report: {out.name}",
        bundle_path=bundle.path,
        created=time.strftime("%Y-%m-%d %H:%M"),
        versions=bundle.meta.software or {},
        summary=summary,
        train_counts=train_counts,
        log=_training_log(out),
        dropped=image_set.dropped,
        min_per_class=config.min_per_class,
        skipped=data.skipped,
        config_text=(out / CONFIG_FILE).read_text(),
    )
    write_json_atomic(out / METRICS_FILE, dict(evaluation.metrics))
    return report


def _headline(evaluation: Evaluation) -> dict:
    """The figures of a bundle that a summary quotes: not per class."""
    m = evaluation.metrics
    keys = ("accuracy", "macro_f1", "macro_recall")
    return {**{k: m[k] for k in keys}, "inference_ms_per_image": evaluation.inference_ms_per_image}


def _one_view_row(fast: Evaluation) -> tuple[str, str]:
    m = fast.metrics
    return (
        f"{ONE_VIEW_BUNDLE}/ (each image read once, as it lies)",
        f"accuracy {m['accuracy']:.4f}, mean F1 over classes {m['macro_f1']:.4f}, "
        f"{fast.inference_summary}",
    )


def as_trained_metrics(evaluation, weights: np.ndarray, image_set: ImageSet) -> dict:
    """The headline metrics of the network as trained, with the class weights left in
    (what rare-class recall the weights bought)."""
    predicted = as_trained(evaluation.probabilities, weights).argmax(axis=1)
    full = classification_metrics(evaluation.y_true, predicted, image_set.classes)
    return {k: v for k, v in full.items() if k != "per_class"}


def _training_set(data, config: TrainConfig) -> TrainingSet:
    """Where the images came from and how many of each class there were."""
    image_set: ImageSet = data.image_set
    classes = image_set.classes
    counts = np.bincount(data.labels, minlength=len(classes))
    return TrainingSet(
        source=image_set.source,
        hash=data.dataset_hash,
        n_images=len(data.labels),
        n_train=len(data.train_index),
        n_validation=len(data.val_index),
        counts={name: int(n) for name, n in zip(classes, counts)},
        dropped_classes=image_set.dropped,
        min_per_class=config.min_per_class,
        skipped_images=len(data.skipped),
    )


def _training(state: dict, config: TrainConfig, *, n_train: int) -> TrainingInfo:
    return TrainingInfo(
        epochs=int(state["epoch"]),
        best_epoch=int(state.get("best_epoch", state["epoch"])),
        time_s=float(state["seconds"]),
        time_per_image_ms=1000.0 * state["seconds"] / max(1, n_train * state["epoch"]),
        val_fraction=config.val_fraction,
        seed=config.seed,
        schedule="fixed" if config.schedule == "alrs" and config.epochs else config.schedule,
        augment=config.augment,
    )


def _summary(
    evaluation: Evaluation, data, config: TrainConfig, model_params: dict, state: dict
) -> list[tuple[str, str]]:
    """The report's summary table."""
    m = evaluation.metrics
    colour = "grey" if config.channels == 1 else "colour"
    params = ", ".join(f"{k}={v}" for k, v in model_params.items())
    return [
        ("model", f"{config.model} ({params})"),
        ("input", f"{config.input_size}×{config.input_size}, {colour}"),
        ("classes", str(len(data.image_set.classes))),
        ("images (training / validation)", f"{len(data.train_index)} / {len(data.val_index)}"),
        ("accuracy", f"{m['accuracy']:.4f}"),
        (
            "mean precision / recall / F1 over classes",
            f"{m['macro_precision']:.4f} / {m['macro_recall']:.4f} / {m['macro_f1']:.4f}",
        ),
        *_as_trained_row(m),
        ("epochs (best)", f"{state['epoch']} ({state.get('best_epoch', state['epoch'])})"),
        ("training time", f"{state['seconds']:.1f} s"),
        (INFERENCE_LABEL, evaluation.inference_summary),
        ("training-set hash", data.dataset_hash[:16]),
    ]


def _as_trained_row(metrics: dict) -> list[tuple[str, str]]:
    """The figures of the network with its class weights left in, when it had any."""
    trained = metrics.get("as_trained")
    if not trained:
        return []
    return [
        (
            "class weights left in: accuracy / mean recall over classes",
            f"{trained['accuracy']:.4f} / {trained['macro_recall']:.4f} (above: divided out, "
            "probabilities under the training set's class mix)",
        )
    ]


def _calibration_rows(bundle: Bundle) -> list[tuple[str, str]]:
    """The report's line on the temperature the bundle's probabilities carry."""
    c = bundle.meta.calibration
    if c is None:
        return [("calibration", "none: the network's own probabilities (too few validation "
                 "images, or none wrong, to fit a temperature)")]  # fmt: skip
    return [
        (
            "calibration",
            f"temperature {c.temperature:.3f} fitted on this split: expected calibration "
            f"error {c.ece_before:.3f} → {c.ece_after:.3f}, log-loss {c.nll_before:.3f} → "
            f"{c.nll_after:.3f}",
        )
    ]


def _training_log(out: Path) -> pd.DataFrame | None:
    log_path = out / LOG_FILE
    return pd.read_csv(log_path) if log_path.exists() else None
