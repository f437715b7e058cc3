import numpy as np
import pytest

from foramflow.bundle.bf16 import held_out_rechecked_agreement


def _probs(*rows):
    return np.array([[p, 1.0 - p] for p in rows], dtype=np.float32)


def test_rechecked_agreement_is_judged_with_the_other_halfs_margin():
    # Even images set a margin of 0.24 for the odd ones (image 0 moved by 0.12); the odd
    # ones set 0.06 for the even ones (image 1 moved by 0.03).
    exact = _probs(0.56, 0.515, 0.7, 0.9, 0.6, 0.8)
    approx = _probs(0.44, 0.485, 0.7, 0.9, 0.6, 0.79)
    assert (exact.argmax(1) == approx.argmax(1)).mean() == pytest.approx(4 / 6)
    # Image 1's flip (gap 0.03 < 0.24) is recomputed; image 0's (gap 0.12 > 0.06) is not,
    # though a margin set by all six images (0.24) would have caught it too.
    assert held_out_rechecked_agreement(exact, approx) == pytest.approx(5 / 6)


def test_rechecked_agreement_is_complete_when_no_image_changes():
    exact = _probs(0.2, 0.9, 0.6)
    assert held_out_rechecked_agreement(exact, exact.copy()) == 1.0


def test_rechecked_agreement_needs_two_images():
    assert held_out_rechecked_agreement(_probs(0.3), _probs(0.7)) is None
