"""After training: export the best network as a bundle, evaluate the bundle, write the report."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from foramflow.data.dataset import ImageSet
from foramflow.evaluate.evaluation import evaluate_bundle, write_evaluation
from foramflow.imaging.preprocess import PreprocessSpec
from foramflow.io.bundle import META_FILE, NETWORK_INFO_FILE, Bundle
from foramflow.io.files import write_json_atomic
from foramflow.io.network_info import write_network_info
from foramflow.progress import Progress
from foramflow.train.config import TrainConfig
from foramflow.train.export import MODEL_FILE, bundle_meta, export_onnx


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
) -> Path:
    """Write ``out/bundle`` and ``out/evaluation``; return the path of the HTML report."""
    image_set: ImageSet = data.image_set
    classes = image_set.classes
    bundle_dir = out / "bundle"
    bundle_dir.mkdir(exist_ok=True)
    progress.message("Exporting the best network to ONNX …")
    export_onnx(
        network, bundle_dir / MODEL_FILE, input_size=config.input_size, channels=config.channels
    )
    spec = PreprocessSpec(size=config.input_size, channels=config.channels)
    meta = bundle_meta(
        name=out.name,
        model_name=config.model,
        model_params=model_params,
        labels=classes,
        preprocessing=spec.to_dict(),
        input_size=config.input_size,
        channels=config.channels,
    )
    write_json_atomic(bundle_dir / META_FILE, meta)

    progress.message("Evaluating the bundle on the validation split …")
    val_images = data.images[data.val_index]
    evaluation = evaluate_bundle(Bundle.load(bundle_dir), val_images, data.labels[data.val_index])
    n_train = len(data.train_index)
    meta.update(
        metrics=evaluation.metrics,
        validation_confusion={"labels": classes, "matrix": evaluation.confusion.tolist()},
        inference_ms_per_image=evaluation.inference_ms_per_image,
        training_set={
            "source": image_set.source,
            "hash": data.dataset_hash,
            "n_images": len(data.labels),
            "n_train": n_train,
            "n_validation": len(data.val_index),
            "counts": {
                name: int(n)
                for name, n in zip(classes, np.bincount(data.labels, minlength=len(classes)))
            },
            "dropped_classes": image_set.dropped,
            "min_per_class": config.min_per_class,
            "skipped_images": len(data.skipped),
        },
        training={
            "epochs": int(state["epoch"]),
            "best_epoch": int(state.get("best_epoch", state["epoch"])),
            "time_s": float(state["seconds"]),
            "time_per_image_ms": 1000.0 * state["seconds"] / max(1, n_train * state["epoch"]),
            "val_fraction": config.val_fraction,
            "seed": config.seed,
            "schedule": "fixed" if config.epochs else "alrs",
            "augment": config.augment,
        },
    )
    write_json_atomic(bundle_dir / META_FILE, meta)
    write_network_info(bundle_dir / NETWORK_INFO_FILE, meta)

    log_path = out / "log.csv"
    log = pd.read_csv(log_path) if log_path.exists() else None
    m = evaluation.metrics
    summary = [
        ("model", f"{config.model} ({', '.join(f'{k}={v}' for k, v in model_params.items())})"),
        (
            "input",
            f"{config.input_size}×{config.input_size}, "
            f"{'grey' if config.channels == 1 else 'colour'}",
        ),
        ("classes", str(len(classes))),
        ("images (training / validation)", f"{n_train} / {len(data.val_index)}"),
        ("accuracy", f"{m['accuracy']:.4f}"),
        (
            "mean precision / recall / F1 over classes",
            f"{m['macro_precision']:.4f} / {m['macro_recall']:.4f} / {m['macro_f1']:.4f}",
        ),
        ("epochs (best)", f"{state['epoch']} ({state.get('best_epoch', state['epoch'])})"),
        ("training time", f"{state['seconds']:.1f} s"),
        ("inference (ONNX Runtime, CPU)", f"{evaluation.inference_ms_per_image:.2f} ms per image"),
        ("training-set hash", data.dataset_hash[:16]),
    ]
    report = write_evaluation(
        out / "evaluation",
        evaluation,
        val_images,
        classes=classes,
        title=f"foramflow training report: {out.name}",
        bundle_path=bundle_dir,
        created=time.strftime("%Y-%m-%d %H:%M"),
        versions=meta["software"],
        summary=summary,
        train_counts=train_counts,
        log=log,
        dropped=image_set.dropped,
        min_per_class=config.min_per_class,
        skipped=data.skipped,
        config_text=(out / "config.yaml").read_text(),
    )
    write_json_atomic(out / "metrics.json", {k: v for k, v in m.items()})
    return report
