"""One view first, every turn only where it is unsure: a network that averages its answers
over the four quarter turns of an image does four times the work of the same weights
reading the image once, yet on most images the one view is already sure of the class the
four would give.

The cascade runs the one-view network (``model.one_view.onnx``, the run's ``bundle_fast``
network) on every image, and the full network only on images whose two best one-view
classes lie less than a margin apart. The margin is the smallest whose validation top-1,
measured on the validation split both networks were evaluated on at training time, stays
within :data:`MAX_TOP1_LOSS` of the full network's; where that sends more than half the
images on, or the split is too small to tell, the bundle gets no cascade. Each network's
probabilities keep their own calibration temperature.
"""

from __future__ import annotations

import numpy as np

from foramflow.bundle.schema import CascadeCheck
from foramflow.bundle.validation import ValidationSet

#: The most validation top-1 (a fraction) the cascade may lose against the full network.
MAX_TOP1_LOSS = 0.003
#: Fewer validation images than this cannot tell a loss of :data:`MAX_TOP1_LOSS`.
MIN_VALIDATION_IMAGES = 200
#: Beyond this share of images sent on to the full network, the first pass costs more than
#: it saves.
MAX_RECHECKED_SHARE = 0.5


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
) -> CascadeCheck | None:
    """The cascade with the smallest share of images sent to the full network whose
    validation top-1 is within :data:`MAX_TOP1_LOSS` of the full network's; None when the
    two sets are not of the same images, there are too few of them, or the cascade would
    send more than :data:`MAX_RECHECKED_SHARE` of them on."""
    labels = np.asarray(full.labels)
    if not np.array_equal(labels, one_view.labels) or len(labels) < MIN_VALIDATION_IMAGES:
        return None
    full_right = full.probabilities.argmax(1) == labels
    one_right = one_view.probabilities.argmax(1) == labels
    margin = top_two_margin(one_view.probabilities)
    full_top1 = float(full_right.mean())
    # Candidate margins: just above each observed gap (an image at the margin is rechecked),
    # smallest first, so that the first that holds the accuracy rechecks the fewest images.
    for cut in np.unique(np.concatenate([[0.0], np.nextafter(margin, 2.0)])):
        rechecked = margin < cut
        top1 = float(np.where(rechecked, full_right, one_right).mean())
        if top1 >= full_top1 - MAX_TOP1_LOSS:
            if rechecked.mean() > MAX_RECHECKED_SHARE:
                return None
            return CascadeCheck(
                margin=float(cut),
                one_view_temperature=float(one_view_temperature),
                validation_images=len(labels),
                rechecked_share=float(rechecked.mean()),
                top1=top1,
                full_top1=full_top1,
                one_view_top1=float(one_right.mean()),
                model_sha256=model_sha256,
                file_sha256=file_sha256,
            )
    return None
