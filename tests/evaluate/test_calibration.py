"""Temperature scaling, class offsets, coverage curve and threshold choice, with known answers."""

import numpy as np
import pytest
from scipy.special import softmax

from foramflow.evaluate.calibration import (
    NEVER,
    apply_class_bias,
    choose_thresholds,
    coverage_accuracy_curve,
    expected_calibration_error,
    fit_class_bias,
    fit_temperature,
    negative_log_likelihood,
    threshold_for_precision,
    validation_calibration,
)


def calibrated_then_sharpened(n=3000, k=4, sharpen=3.0, seed=0):
    """Labels drawn from calibrated probabilities, then the logits multiplied by ``sharpen``."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, k))
    probs = softmax(logits, axis=1)
    labels = (probs.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return softmax(sharpen * logits, axis=1), labels


def test_temperature_undoes_overconfidence_and_lowers_nll():
    probs, labels = calibrated_then_sharpened(sharpen=3.0)
    temperature = fit_temperature(probs, labels)
    assert temperature == pytest.approx(3.0, rel=0.1)
    assert negative_log_likelihood(probs, labels, temperature) < 0.8 * negative_log_likelihood(
        probs, labels
    )
    scaled = softmax(np.log(probs) / temperature, axis=1)
    assert expected_calibration_error(scaled, labels) < expected_calibration_error(probs, labels)
    assert (scaled.argmax(axis=1) == probs.argmax(axis=1)).all()  # accuracy untouched


def test_a_run_calibrates_an_under_confident_network_on_its_validation_split():
    probs, labels = calibrated_then_sharpened(n=1000, sharpen=0.5, seed=2)  # too timid
    record = validation_calibration(probs, labels)
    assert record.temperature == pytest.approx(0.5, rel=0.1)
    assert record.n_images == 1000
    assert record.ece_after < record.ece_before
    assert record.nll_after < record.nll_before
    assert record.class_bias is None  # a class offset each would overfit a run's split
    # the drift reference describes the probabilities classify will give: sharper ones
    assert record.top_probability_quantiles[50] > np.median(probs.max(axis=1))


def test_a_run_leaves_too_few_or_faultless_validation_images_uncalibrated():
    probs, labels = calibrated_then_sharpened(n=1000, seed=3)
    assert validation_calibration(probs[:99], labels[:99]) is None
    right = probs.argmax(axis=1)
    assert validation_calibration(probs, right) is None  # the fit would run to its bound


def test_class_bias_recovers_a_prior_tilt():
    probs, labels = calibrated_then_sharpened(sharpen=1.0, seed=1)
    tilt = np.array([1.0, 0.0, -0.5, -0.5])
    tilted = apply_class_bias(probs, tilt)  # a network leaning towards class 0
    bias = fit_class_bias(tilted, labels)
    assert bias == pytest.approx(-(tilt - tilt.mean()), abs=0.15)


def test_coverage_accuracy_curve_on_a_hand_made_set():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1])  # the 0.8 image is wrong
    curve = coverage_accuracy_curve(probs, labels)
    assert curve["threshold"].tolist() == [0.9, 0.8, 0.7, 0.6]
    assert curve["coverage"].tolist() == [0.25, 0.5, 0.75, 1.0]
    assert curve["accuracy"].tolist() == pytest.approx([1.0, 0.5, 2 / 3, 0.75])


def test_threshold_for_precision():
    scores = np.array([0.99, 0.95, 0.9, 0.85, 0.7, 0.6])
    correct = np.array([True, True, True, False, True, False])
    # Accepting the top 3 gives precision 1; the top 5 gives 4/5 = 0.8.
    assert threshold_for_precision(scores, correct, 0.95) == pytest.approx((0.9 + 0.85) / 2)
    assert threshold_for_precision(scores, correct, 0.8) == pytest.approx((0.7 + 0.6) / 2)
    accepted = scores > threshold_for_precision(scores, correct, 0.8)
    assert correct[accepted].mean() >= 0.8
    assert threshold_for_precision(scores, ~np.ones(6, bool), 0.5) == NEVER
    # The classify rule needs a threshold above 0.5.
    assert threshold_for_precision([0.55, 0.52], [True, True], 0.9) == 0.501


def test_per_class_thresholds_differ_for_easy_and_hard_classes():
    rng = np.random.default_rng(2)
    n = 400
    top = rng.uniform(0.5, 1.0, 2 * n)
    predicted = np.repeat([0, 1], n)
    # Class 0 is always right; class 1 only when its score is high.
    correct = np.where(predicted == 0, True, rng.random(2 * n) < (top - 0.5) * 2)
    labels = np.where(correct, predicted, 1 - predicted)
    probs = np.zeros((2 * n, 2))
    probs[np.arange(2 * n), predicted] = top
    probs[np.arange(2 * n), 1 - predicted] = 1 - top
    threshold, per_class = choose_thresholds(
        probs, labels, ["easy", "hard"], target=0.9, per_class=True
    )
    assert per_class["easy"] == 0.501
    assert per_class["hard"] > 0.85
    assert per_class["easy"] < threshold < per_class["hard"]


def test_a_fitted_temperature_at_a_bound_of_the_sane_range_is_flagged():
    from foramflow.evaluate.calibration import at_bound

    assert at_bound(0.05) and at_bound(20.0) and at_bound(19.95)
    assert not at_bound(1.0) and not at_bound(0.06) and not at_bound(19.0)
    # every image wrong and certain: the fit runs to the top of the range
    probs = np.tile([0.999, 0.001], (50, 1))
    assert at_bound(fit_temperature(probs, np.ones(50, int)))
