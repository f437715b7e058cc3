"""The faster ways a trained bundle may run, made and judged on the validation split at
training time: int8 copies of its networks (:mod:`foramflow.bundle.quantize`) and the
cascade of one view first, every view where it is unsure (:mod:`foramflow.bundle.cascade`)."""

from __future__ import annotations

import numpy as np

from foramflow.bundle.cascade import (
    MIN_VALIDATION_IMAGES,
    ONE_VIEW_FILES,
    Stage,
    fastest_cascade,
    image_views,
    runs_int8,
)
from foramflow.bundle.engine import Engine, validated
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
#: Validation images turned and run through the int8 one view at a time.
EVERY_VIEW_BATCH = 64


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


def cascade_stages(
    source: Bundle,
    evaluation: Evaluation,
    int8: CheckedInt8 | None,
    full: Evaluation,
    images: np.ndarray,
    views: int,
) -> list[Stage]:
    """The one-view network as the cascade's stages, named as the run's bundle holds it:
    in fp32, whose answer over every view is the full network's (``full``), and, where
    there is one, as its int8 copy, run here on every view of the validation ``images``
    (judged by the cascade it makes, not by its own top-1)."""
    fp32_file, int8_file = ONE_VIEW_FILES
    fp32 = Stage(
        evaluation.probabilities, fp32_file, source.read_model(),
        evaluation.inference_ms_per_image, every_view=full.probabilities,
    )  # fmt: skip
    if int8 is None:
        return [fp32]
    every_view = _every_view(
        Engine(source, precision="int8", calibrated=False), images, int8.probabilities, views
    )
    int8_stage = Stage(
        int8.probabilities, int8_file, source.read_model(int8.record.file), int8.ms_per_image,
        every_view=every_view, weight_bits=int8.record.weight_bits,
    )  # fmt: skip
    return [fp32, int8_stage]


def _every_view(
    engine: Engine, images: np.ndarray, as_they_lie: np.ndarray, views: int
) -> np.ndarray:
    """The mean of ``engine``'s answers over the ``views`` views of ``images``, its answers
    for the images as they lie given; a batch of images at a time."""
    total = np.asarray(as_they_lie, dtype=np.float64).copy()
    for start in range(0, len(images), EVERY_VIEW_BATCH):
        chunk = np.asarray(images[start : start + EVERY_VIEW_BATCH], dtype=np.float32)
        for view in image_views(chunk, views, as_it_lies=False):
            total[start : start + len(chunk)] += engine.predict(view)
    return (total / views).astype(np.float32)


def add_cascade(
    bundle: Bundle,
    stages: list[Stage],
    full: Evaluation,
    views: int,
    one_view_temperature: float,
    progress: Progress,
) -> CascadeCheck | None:
    """Give ``bundle`` the fastest cascade that keeps the fp32 full network's validation
    top-1 (:func:`foramflow.bundle.cascade.fastest_cascade`), and the one-view networks it
    runs; where a stage of it runs the int8 copy, also the fastest of the fp32 one view
    alone, for CPUs that do not compute int8 exactly. Returns the fastest."""

    def fastest(candidates: list[Stage]) -> CascadeCheck | None:
        return fastest_cascade(
            candidates,
            ValidationSet(labels=full.y_true, probabilities=full.probabilities),
            views=views,
            one_view_temperature=one_view_temperature,
            model_sha256=bundle.file_sha256(),
        )

    record = fastest(stages)
    if record is None:
        progress.message(
            f"No cascade for {RUN_BUNDLE}/: on this validation split the one view could not "
            "answer for enough images without losing top-1"
        )
        return None
    if runs_int8(record):  # it runs only where int8 is exact: the fp32 one elsewhere
        fp32 = fastest([stage for stage in stages if stage.file == ONE_VIEW_FILE])
        kept = {"cascade": fp32, "cascade_int8": record}
    else:
        kept = {"cascade": record, "cascade_int8": None}
    used = {r.one_view_file for r in kept.values() if r} | {r.full_file for r in kept.values() if r}
    try:
        for stage in (stage for stage in stages if stage.file in used):
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
