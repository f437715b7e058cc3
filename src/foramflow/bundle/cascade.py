"""One view first, every turn only where it is unsure: a network that averages its answers
over the four quarter turns of an image does four times the work of the same weights
reading the image once, yet on most images the one view is already sure of the class the
four would give.

The cascade runs the one-view network (``model.one_view.onnx``, the run's ``bundle_fast``
network) on every image, and the full network only on images whose two best one-view
classes lie less than a margin apart. The margin is chosen on the validation split both
networks were evaluated on at training time: the smallest that leaves the one view's class,
where it differs from the full network's, on at most :data:`MAX_DIFFERENT` of the images.
Each image sent on can only remove such a difference, so the choice is steady from one half
of the split to the other; a margin chosen on the top-1 itself, which moves up and down by
chance as images are sent on, was not (docs/decisions.md). The cascade is kept only where,
judged held out (each half of the split by the margin so chosen on the other half), its
top-1 is at most :data:`MAX_TOP1_LOSS` below the full network's; where it is not, half the
share of differences is allowed, and judged the same way. Where the cascade would
send more than half the images on, or the split is too small to tell, the bundle gets none.
Each network's probabilities keep their own calibration temperature.

The full stage runs the one-view network itself on each of the views the full network
averages (its four turns; eight with the mirror image's): the same weights, so the mean of
its answers is the full network's answer, and where the first stage ran the same file its
answer for the image as it lies is reused, a quarter of the full stage's work. Either stage
may instead run the one view's int8 copy (:mod:`foramflow.bundle.quantize`) where the
cascade with it still keeps the bound: an int8 copy that alone loses too much mostly errs
on close calls, which the margin sends on, and its mean over every view is judged, held
out, against the fp32 full network's top-1 like any full stage. Of the pairs of stages that
keep the bound, the one expected to be fastest, from the time each network took on the
validation split, is kept.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from foramflow.bundle.schema import (
    MODEL_FILE,
    ONE_VIEW_FILE,
    ONE_VIEW_INT8_FILE,
    CascadeCheck,
)
from foramflow.bundle.validation import ValidationSet

#: The most validation top-1 (a fraction) the cascade may lose against the full network.
MAX_TOP1_LOSS = 0.003
#: The largest share of validation images the cascade may answer with another class than
#: the full network would (the one view's, where it is sure); about as many of those are
#: the one view's right answers as the full network's. Where that loses more than the
#: bound, held out, half of it is tried (more images sent on).
MAX_DIFFERENT = 0.01
ALLOWANCES = (MAX_DIFFERENT, MAX_DIFFERENT / 2)
#: Fewer validation images than this cannot tell a loss of :data:`MAX_TOP1_LOSS`.
MIN_VALIDATION_IMAGES = 200
#: Beyond this share of images sent on to the full network, the first pass costs more than
#: it saves.
MAX_RECHECKED_SHARE = 0.5
#: The files the first stage of a run's bundle may run: (fp32, int8).
ONE_VIEW_FILES = (ONE_VIEW_FILE, ONE_VIEW_INT8_FILE)


@dataclass(frozen=True)
class Stage:
    """A one-view network a stage of the cascade may run: its probabilities on the
    validation split as the images lie, its file name in the bundle, its bytes and its
    measured time per image; where it may run the full stage, its answers averaged over
    every view the full network averages (``every_view``); for an int8 copy, the bits of
    its weights (which CPUs compute it exactly)."""

    probabilities: np.ndarray
    file: str
    model: bytes
    ms_per_image: float
    every_view: np.ndarray | None = None
    weight_bits: int | None = None


def fastest_cascade(
    stages: list[Stage],
    reference: ValidationSet,
    *,
    views: int,
    one_view_temperature: float,
    model_sha256: str,
) -> CascadeCheck | None:
    """Of the pairs of ``stages`` (first stage, full stage: the fp32 one view,
    :data:`ONE_VIEW_FILE`, and its int8 copy where there is one) whose cascade keeps the
    ``reference``'s top-1 (the fp32 full network's, which averages ``views`` views), the
    one expected to be fastest; None where none keeps it."""
    found = []
    digests = {stage.file: hashlib.sha256(stage.model).hexdigest() for stage in stages}
    for first in stages:
        for full in (stage for stage in stages if stage.every_view is not None):
            bits = [s.weight_bits for s in (first, full) if s.weight_bits is not None]
            record = choose_cascade(
                ValidationSet(labels=reference.labels, probabilities=full.every_view),
                ValidationSet(labels=reference.labels, probabilities=first.probabilities),
                reference=reference,
                one_view_temperature=one_view_temperature,
                model_sha256=model_sha256,
                file_sha256=digests[first.file],
                one_view_file=first.file,
                full_file=full.file,
                full_file_sha256=digests[full.file],
                views=views,
                int8_weight_bits=max(bits, default=None),
            )
            if record is not None:
                views_run = views - 1 if first.file == full.file else views
                expected_ms = (
                    first.ms_per_image + record.rechecked_share * views_run * full.ms_per_image
                )
                found.append((expected_ms, record))
    return min(found, key=lambda item: item[0])[1] if found else None


def runs_int8(record: CascadeCheck) -> bool:
    """Whether either stage of the cascade runs an int8 copy."""
    return ONE_VIEW_INT8_FILE in (record.one_view_file, record.full_file)


def image_views(images: np.ndarray, views: int, *, as_it_lies: bool = True) -> list[np.ndarray]:
    """The ``views`` (4 or 8) of preprocessed images (N, C, S, S) that a full network
    averages: the four quarter turns, then those of the mirror image; without the image as
    it lies where ``as_it_lies`` is False."""
    turned = [images[..., ::-1]] if views == 8 else []
    out = [np.rot90(view, k, axes=(2, 3)) for view in [images, *turned] for k in range(4)]
    return [np.ascontiguousarray(view) for view in (out if as_it_lies else out[1:])]


def top_two_margin(probabilities: np.ndarray) -> np.ndarray:
    """The gap between each row's two largest probabilities."""
    if probabilities.shape[1] < 2:
        return np.ones(len(probabilities))
    top_two = np.partition(probabilities, -2, axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0]


def choose_cascade(
    full: ValidationSet,
    one_view: ValidationSet,
    *,
    one_view_temperature: float,
    model_sha256: str,
    file_sha256: str,
    reference: ValidationSet | None = None,
    one_view_file: str = ONE_VIEW_FILE,
    full_file: str = MODEL_FILE,
    full_file_sha256: str | None = None,
    views: int = 4,
    int8_weight_bits: int | None = None,
) -> CascadeCheck | None:
    """The cascade with the smallest share of images sent to the full network that gives
    another class than the full network for at most :data:`MAX_DIFFERENT` of the
    validation images (or half that, see :data:`ALLOWANCES`); None when the two sets are
    not of the same images, there are too few of them, the cascade would send more than
    :data:`MAX_RECHECKED_SHARE` of them on, or its held-out top-1 (each half judged by
    the margin chosen on the other) is more than :data:`MAX_TOP1_LOSS` below the
    ``reference``'s (by default the full network's). ``one_view_file``, ``full_file``:
    the network each stage runs, ``full_file_sha256`` the full stage's where it is not
    model.onnx, ``views`` those the full network averages, and ``int8_weight_bits`` the
    bits of the int8 copy a stage runs."""
    labels = np.asarray(full.labels)
    reference = reference or full
    same = all(np.array_equal(labels, other.labels) for other in (one_view, reference))
    if not same or len(labels) < MIN_VALIDATION_IMAGES:
        return None
    full_right = full.probabilities.argmax(1) == labels
    one_right = one_view.probabilities.argmax(1) == labels
    different = one_view.probabilities.argmax(1) != full.probabilities.argmax(1)
    margin = top_two_margin(one_view.probabilities)
    full_top1 = float((reference.probabilities.argmax(1) == labels).mean())
    for allowance in ALLOWANCES:
        cut = _smallest_cut(margin, different, allowance)
        rechecked = margin < cut
        if rechecked.mean() > MAX_RECHECKED_SHARE:
            return None  # a smaller allowance sends still more on
        held_out = _held_out_top1(margin, different, full_right, one_right, allowance)
        if held_out >= full_top1 - MAX_TOP1_LOSS:
            break
    else:
        return None
    return CascadeCheck(
        margin=cut,
        one_view_temperature=float(one_view_temperature),
        validation_images=len(labels),
        rechecked_share=float(rechecked.mean()),
        top1=float(np.where(rechecked, full_right, one_right).mean()),
        held_out_top1=held_out,
        full_top1=full_top1,
        one_view_top1=float(one_right.mean()),
        model_sha256=model_sha256,
        file_sha256=file_sha256,
        one_view_file=one_view_file,
        full_file=full_file,
        full_file_sha256=full_file_sha256,
        views=views,
        int8_weight_bits=int8_weight_bits,
    )


def _smallest_cut(margin: np.ndarray, different: np.ndarray, allowance: float) -> float:
    """The smallest margin that sends on all but ``allowance`` (a share of all images) of
    the images whose one-view class is not the full network's (``different``). Candidates
    lie just above each observed gap (an image at the margin is sent on); 0 sends none."""
    allowed = int(allowance * len(margin))
    gaps = np.sort(margin[different])
    if len(gaps) <= allowed:
        return 0.0
    return float(np.nextafter(gaps[len(gaps) - allowed - 1], 2.0))


def _held_out_top1(
    margin: np.ndarray,
    different: np.ndarray,
    full_right: np.ndarray,
    one_right: np.ndarray,
    allowance: float,
) -> float:
    """The cascade's top-1 with each half of the split (alternate images) judged by the
    margin chosen on the other half."""
    half = np.arange(len(margin)) % 2
    right = np.empty(len(margin), dtype=bool)
    for judged in (0, 1):
        chosen_on, on = half != judged, half == judged
        cut = _smallest_cut(margin[chosen_on], different[chosen_on], allowance)
        right[on] = np.where(margin[on] < cut, full_right[on], one_right[on])
    return float(right.mean())
