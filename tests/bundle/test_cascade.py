"""The cascade's margin is chosen on validation outputs: the fewest images sent on to the
full network that leave at most 1 % of them with another class than it gives, kept where
the held-out top-1 stays within the bound."""

from __future__ import annotations

import numpy as np
import pytest

from foramflow.bundle.cascade import (
    ONE_VIEW_FILES,
    Stage,
    choose_cascade,
    fastest_cascade,
    top_two_margin,
)
from foramflow.bundle.validation import ValidationSet

SURE, UNSURE = [0.9, 0.05, 0.05], [0.45, 0.40, 0.15]


def sets(n_sure: int, n_unsure: int, *, full_wrong: int = 0):
    """One view sure and right on ``n_sure`` images, unsure and wrong (it says class 0, the
    truth is 1) on ``n_unsure``; the full network right on all but ``full_wrong``."""
    labels = np.array([0] * n_sure + [1] * n_unsure)
    one_view = np.array([SURE] * n_sure + [UNSURE] * n_unsure)
    full = np.eye(3)[labels] * 0.8 + 0.2 / 3
    full[:full_wrong] = np.roll(full[:full_wrong], 1, axis=1)
    return ValidationSet(labels, full), ValidationSet(labels, one_view)


def choose(full, one_view):
    return choose_cascade(
        full, one_view, one_view_temperature=1.5, model_sha256="a", file_sha256="b"
    )


def test_the_unsure_images_and_only_they_go_to_the_full_network():
    record = choose(*sets(240, 60))
    unsure_gap, sure_gap = top_two_margin(np.array([UNSURE, SURE]))
    assert unsure_gap < record.margin <= sure_gap
    assert record.rechecked_share == pytest.approx(0.2)
    assert record.top1 == record.full_top1 == record.held_out_top1 == 1.0
    assert record.one_view_top1 == pytest.approx(0.8)
    assert record.validation_images == 300 and record.one_view_temperature == 1.5


@pytest.mark.parametrize(("n_unsure", "share"), [(10, 0.01), (20, 0.02)])
def test_one_in_a_hundred_images_may_keep_another_class_than_the_full_networks(n_unsure, share):
    """Ten of 1 000 images answered by the one view where the full network differs is the
    allowance; a cascade that sends nothing on would lose a point, held out too, so half the
    allowance is tried, and the ten are sent on. Twenty are sent on at once (all at the
    same gap). Either way the top-1 is the full network's."""
    record = choose(*sets(1000 - n_unsure, n_unsure))
    assert record.rechecked_share == pytest.approx(share)
    assert record.top1 == record.held_out_top1 == record.full_top1 == 1.0


def test_half_the_allowance_is_tried_where_the_whole_loses_too_much():
    """Sure but wrong, eight of 1 000 one-view answers lie just above the gaps of the unsure
    ones: within the allowance of ten, the cascade loses 0.8 points (held out); with half of
    it (five), the margin must pass the eight too, and all twenty go on."""
    labels = np.array([0] * 980 + [1] * 20)
    one_view = np.array([SURE] * 980 + [UNSURE] * 12 + [[0.5, 0.3, 0.2]] * 8)
    full = ValidationSet(labels, np.eye(3)[labels] * 0.8 + 0.2 / 3)
    record = choose(full, ValidationSet(labels, one_view))
    assert record.rechecked_share == pytest.approx(0.02)
    assert record.held_out_top1 == record.full_top1 == 1.0


def test_unsure_images_that_the_full_network_answers_alike_stay_with_the_one_view():
    labels = np.zeros(300, int)
    one_view = np.array([SURE] * 200 + [UNSURE] * 100)  # unsure, but class 0 as the full's
    full = np.eye(3)[labels] * 0.8 + 0.2 / 3
    record = choose(ValidationSet(labels, full), ValidationSet(labels, one_view))
    assert record.margin == 0.0 and record.rechecked_share == 0.0 and record.top1 == 1.0


def test_no_cascade_when_it_would_send_most_images_on():
    assert choose(*sets(100, 200)) is None


def test_no_cascade_when_a_margin_chosen_on_one_half_fails_the_other():
    """Alternate images: twenty the one view gets wrong and the full network right, the
    even ones' two best classes 0.1 apart, the odd ones' 0.3. Chosen on the even half, the
    margin sends on the gaps of 0.1 and leaves the odd half's ten wrong: a point of top-1."""
    labels, one_view = [], []
    for i in range(1000):
        wrong = i < 40 and i % 4 < 2  # 10 even and 10 odd images
        gap = 0.1 if i % 2 == 0 else 0.3
        labels.append(1 if wrong else 0)
        one_view.append([0.5 + gap / 2, 0.5 - gap / 2, 0.0] if wrong else SURE)
    labels = np.array(labels)
    full = ValidationSet(labels, np.eye(3)[labels])
    assert choose(full, ValidationSet(labels, np.array(one_view))) is None


def test_no_cascade_on_a_split_too_small_to_tell():
    assert choose(*sets(150, 30)) is None


def test_no_cascade_when_the_two_sets_are_of_other_images():
    full, one_view = sets(240, 60)
    shuffled = ValidationSet(one_view.labels[::-1].copy(), one_view.probabilities)
    assert choose(full, shuffled) is None


def test_the_margin_is_between_the_two_best_classes():
    probs = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(top_two_margin(probs), [0.5, 0.05, 1.0])


ONE_VIEW, ONE_VIEW_INT8 = ONE_VIEW_FILES


def stage(probabilities, file, ms, every_view=None):
    bits = 8 if file == ONE_VIEW_INT8 else None
    every_view = None if every_view is None else np.asarray(every_view)
    return Stage(np.asarray(probabilities), file, file.encode(), ms, every_view, bits)


def fastest(stages, full):
    return fastest_cascade(stages, full, views=4, one_view_temperature=1.0, model_sha256="a")


def test_an_int8_first_stage_is_taken_where_its_cascade_keeps_the_top1():
    """An int8 one view that alone loses more than the bound (a tenth of its unsure images
    turn wrong: 2 points) is still the faster first stage where the margin sends those on;
    the full stage runs the fp32 one view on every view."""
    full, one_view = sets(240, 60)
    int8 = one_view.probabilities.copy()
    int8[:6] = [0.40, 0.45, 0.15]  # unsure and wrong
    record = fastest(
        [stage(one_view.probabilities, ONE_VIEW, 4.0, full.probabilities),
         stage(int8, ONE_VIEW_INT8, 1.0)],
        full,
    )  # fmt: skip
    assert (record.one_view_file, record.full_file) == (ONE_VIEW_INT8, ONE_VIEW)
    assert record.views == 4 and record.full_file_sha256 is not None
    assert record.int8_weight_bits == 8
    assert record.top1 == record.full_top1 == 1.0
    assert record.rechecked_share == pytest.approx(0.22)


def test_an_int8_one_view_that_loses_its_sure_answers_is_not_taken():
    full, one_view = sets(240, 60)
    broken = one_view.probabilities.copy()
    broken[:30] = np.roll(broken[:30], 1, axis=1)  # sure, but wrong: no margin catches these
    record = fastest(
        [stage(broken, ONE_VIEW_INT8, 1.0),
         stage(one_view.probabilities, ONE_VIEW, 4.0, full.probabilities)],
        full,
    )  # fmt: skip
    assert record.one_view_file == record.full_file == ONE_VIEW
    assert record.int8_weight_bits is None


def test_the_int8_first_stage_must_save_more_than_the_view_it_cannot_lend():
    """The fp32 first stage lends the full stage its view as the image lies; an int8 one
    sends its unsure images through all four. Here the int8 copy is unsure of a third of
    the images: 3 + 1/3 · 4 · 4 = 8.3 ms an image against fp32's 4 + 0.2 · 3 · 4 = 6.4."""
    full, one_view = sets(240, 60)
    int8 = one_view.probabilities.copy()
    int8[:40] = UNSURE[1], UNSURE[0], UNSURE[2]  # unsure but right: sent on all the same
    fp32 = stage(one_view.probabilities, ONE_VIEW, 4.0, full.probabilities)
    record = fastest([fp32, stage(int8, ONE_VIEW_INT8, 3.0)], full)
    assert record.one_view_file == ONE_VIEW and record.rechecked_share == pytest.approx(0.2)
    faster_int8 = [fp32, stage(int8, ONE_VIEW_INT8, 1.0)]
    assert fastest(faster_int8, full).one_view_file == ONE_VIEW_INT8  # 6.3 ms: then it pays


@pytest.mark.parametrize("wrong_in_int8", [0, 10])
def test_an_int8_full_stage_is_taken_where_its_mean_over_the_views_keeps_the_top1(wrong_in_int8):
    """The int8 copy on every view costs a quarter of the fp32 one view here: taken where
    its mean over the views keeps the fp32 full network's top-1, not where it gets ten of
    the sixty images sent on wrong (3.3 points below the full network's)."""
    full, one_view = sets(240, 60)
    int8_every_view = full.probabilities.copy()
    int8_every_view[240 : 240 + wrong_in_int8] = np.roll(
        int8_every_view[240 : 240 + wrong_in_int8], 1, axis=1
    )
    stages = [
        stage(one_view.probabilities, ONE_VIEW, 4.0, full.probabilities),
        stage(one_view.probabilities, ONE_VIEW_INT8, 1.0, int8_every_view),
    ]
    record = fastest(stages, full)
    expected = ONE_VIEW_INT8 if wrong_in_int8 == 0 else ONE_VIEW
    assert (record.one_view_file, record.full_file) == (ONE_VIEW_INT8, expected)
    assert record.full_file_sha256 is not None and record.int8_weight_bits == 8
    assert record.held_out_top1 == record.full_top1 == 1.0


def test_the_bound_is_the_reference_networks_top1():
    """Where the full stage is not the network the bundle answers with (its reference), the
    held-out top-1 is judged against the reference's."""
    full, one_view = sets(240, 60)
    better = ValidationSet(full.labels, full.probabilities)
    worse = full.probabilities.copy()
    worse[240:250] = np.roll(worse[240:250], 1, axis=1)  # the full stage wrong on 10 more
    common = dict(one_view_temperature=1.0, model_sha256="a", file_sha256="b")
    assert choose_cascade(ValidationSet(full.labels, worse), one_view, **common) is not None
    assert (
        choose_cascade(ValidationSet(full.labels, worse), one_view, reference=better, **common)
        is None
    )
