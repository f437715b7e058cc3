"""The faster ways a trained bundle may run, made and judged on the validation split at
training time: int8 copies of its networks (:mod:`foramflow.bundle.quantize`) and the
cascade of one view first, every view where it is unsure (:mod:`foramflow.bundle.cascade`)."""

from __future__ import annotations

import hashlib

import numpy as np

from foramflow.bundle.cascade import (
    MIN_VALIDATION_IMAGES,
    ONE_VIEW_FILES,
    Stage,
    fastest_cascade,
)
from foramflow.bundle.engine import validated
from foramflow.bundle.folder import Bundle
from foramflow.bundle.quantize import CheckedInt8, quantize_on_validation
from foramflow.bundle.schema import (
    INT8_FILE,
    ONE_VIEW_FILE,
    RUN_BUNDLE,
    CascadeCheck,
    PrecisionCheck,
)
from foramflow.bundle.validation import ValidationSet
from foramflow.evaluate.evaluation import Evaluation
from foramflow.io.files import atomic_write
from foramflow.progress import Progress

#: Training images the int8 copies' activation ranges are calibrated on.
INT8_CALIBRATION = 256


def add_int8(
    bundle: Bundle, data, evaluation: Evaluation, progress: Progress
) -> CheckedInt8 | None:
    """Give ``bundle`` an int8 copy of its network, calibrated on training images and
    checked on the validation split; "auto" uses it only where it kept fp32's top-1 there."""
    if len(evaluation.y_true) < MIN_VALIDATION_IMAGES:
        return None
    progress.message(f"Making and checking an int8 copy of {bundle.path.name}/ …")
    train = data.train_index
    picked = np.unique(np.linspace(0, len(train) - 1, INT8_CALIBRATION).astype(int))
    try:
        checked = quantize_on_validation(
            bundle,
            data.images[train[picked]],
            data.images[data.val_index],
            evaluation.y_true,
            evaluation.probabilities,
        )
        bundle.update(int8=checked.record)
    except Exception as err:  # a speed-up must not cost the finished training
        (bundle.path / INT8_FILE).unlink(missing_ok=True)
        bundle.attach(int8=None)
        progress.message(
            f"no int8 copy of {bundle.path.name}/ ({type(err).__name__}: {err}); it runs in fp32",
            warning=True,
        )
        return None
    r = checked.record
    verdict = "used where faster" if validated(r) else "too much lost: not used by --precision auto"
    progress.message(
        f"int8 copy of {bundle.path.name}/: validation top-1 {r.validation_top1:.1%} against "
        f"fp32's {r.fp32_validation_top1:.1%}: {verdict}"
    )
    return checked


def first_stages(source: Bundle, evaluation: Evaluation, int8: CheckedInt8 | None) -> list[Stage]:
    """The one-view network as the cascade's first stage, named as the run's bundle holds
    it, in fp32 and, where there is one, as its int8 copy (judged by the cascade it makes,
    not by its own top-1)."""
    fp32_file, int8_file = ONE_VIEW_FILES
    fp32 = Stage(
        evaluation.probabilities, fp32_file, source.read_model(), evaluation.inference_ms_per_image
    )
    if int8 is None:
        return [fp32]
    model = source.read_model(int8.record.file)
    return [fp32, Stage(int8.probabilities, int8_file, model, int8.ms_per_image)]


def add_cascade(
    bundle: Bundle,
    first: list[Stage],
    full: Evaluation,
    views: int,
    one_view_temperature: float,
    progress: Progress,
) -> CascadeCheck | None:
    """Give ``bundle`` the fastest cascade that keeps the fp32 full network's validation
    top-1 (:func:`foramflow.bundle.cascade.fastest_cascade`), and the one-view networks it
    runs; where its first stage runs the int8 copy, also the fastest with the fp32 one view
    first, for CPUs that do not compute int8 exactly. Returns the fastest."""

    def fastest(stages: list[Stage]) -> tuple[CascadeCheck, Stage] | None:
        return fastest_cascade(
            stages,
            ValidationSet(labels=full.y_true, probabilities=full.probabilities),
            views=views,
            one_view_temperature=one_view_temperature,
            model_sha256=hashlib.sha256(bundle.read_model()).hexdigest(),
        )

    found = fastest(first)
    if found is None:
        progress.message(
            f"No cascade for {RUN_BUNDLE}/: on this validation split the one view could not "
            "answer for enough images without losing top-1"
        )
        return None
    record, chosen = found
    fp32_first = [stage for stage in first if stage.file == ONE_VIEW_FILE]
    if chosen.file == ONE_VIEW_FILE:
        kept = {"cascade": record, "cascade_int8": None}
    else:  # the int8 first stage runs only where int8 is exact: the fp32 one elsewhere
        fallback = fastest(fp32_first)
        kept = {"cascade": fallback[0] if fallback else None, "cascade_int8": record}
    files = [chosen, *fp32_first]  # the full stage runs the fp32 one view
    try:
        for stage in files:
            atomic_write(bundle.path / stage.file, lambda tmp, m=stage.model: tmp.write_bytes(m))
        bundle.update(**kept)
    except OSError as err:  # a speed-up must not cost the finished training
        progress.message(f"no cascade for {RUN_BUNDLE}/: {err}", warning=True)
        return None
    for name, kept_record in kept.items():
        if kept_record is not None:
            progress.message(
                f"Cascade for {RUN_BUNDLE}/: one view first ({kept_record.one_view_file}), "
                f"every view ({kept_record.full_file}, {kept_record.views} views) for the "
                f"{kept_record.rechecked_share:.0%} of validation images it is unsure of: top-1 "
                f"{kept_record.top1:.1%} against {kept_record.full_top1:.1%}"
                + (" (where this CPU computes int8 exactly)" if name == "cascade_int8" else "")
            )
    return record


def int8_row(record: PrecisionCheck) -> tuple[str, str]:
    verdict = "used where faster" if validated(record) else "not used: it loses too much"
    return (
        "int8 copy (validation split)",
        f"top-1 {record.validation_top1:.4f} against fp32's {record.fp32_validation_top1:.4f} "
        f"on {record.validation_images} images: {verdict}",
    )


def cascade_row(record: CascadeCheck) -> tuple[str, str]:
    return (
        "cascade (validation split)",
        f"one view first ({record.one_view_file}), every view ({record.full_file}) for the "
        f"{record.rechecked_share:.1%} it is unsure of: top-1 {record.top1:.4f} against "
        f"{record.full_top1:.4f} (held out {record.held_out_top1:.4f})",
    )
