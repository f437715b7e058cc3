"""Error correction against a simulated classifier with known truth."""

import numpy as np
import pytest

from foramflow.abundance.correction import (
    acc_bootstrap,
    adjusted_classify_and_count,
    confusion_rates,
    em_bootstrap,
    em_prior_adjustment,
    percentile_interval,
)
from foramflow.abundance.simulate import SimulatedClassifier, draw_sample

K = 5


@pytest.fixture
def classifier():
    # Classes 1 and 2 are look-alikes, as the paper's Bolivina species.
    return SimulatedClassifier.make(
        K, separation=3.0, lookalikes=[(1, 2, 1.5)], rng=np.random.default_rng(0)
    )


def test_acc_inverts_an_exact_confusion():
    rates = np.array([[0.8, 0.15, 0.05], [0.2, 0.7, 0.1], [0.0, 0.1, 0.9]])
    truth = np.array([0.5, 0.0, 0.5])
    predicted = rates.T @ truth
    assert adjusted_classify_and_count(predicted, rates) == pytest.approx(truth, abs=1e-6)


def test_acc_stays_on_the_simplex():
    # Observed proportions no true mixture can produce: the plain inverse goes negative.
    rates = np.array([[0.9, 0.1], [0.3, 0.7]])
    estimate = adjusted_classify_and_count([0.95, 0.05], rates)
    assert np.linalg.solve(rates.T, [0.95, 0.05]).min() < 0
    assert estimate == pytest.approx([1.0, 0.0], abs=1e-6)


def test_confusion_rates_rows_and_missing_class():
    rates = confusion_rates([[8, 2], [0, 0]])
    assert rates.tolist() == [[0.8, 0.2], [0.0, 1.0]]


def test_em_recovers_a_shifted_prior(classifier):
    rng = np.random.default_rng(1)
    truth = np.array([0.05, 0.5, 0.05, 0.3, 0.1])
    probs = classifier.classify(draw_sample(truth, 20_000, rng=rng), rng=rng)
    estimate = em_prior_adjustment(probs, classifier.prior)
    raw = np.bincount(probs.argmax(axis=1), minlength=K) / len(probs)
    assert np.abs(estimate - truth).max() < 0.02
    assert np.abs(estimate - truth).sum() < 0.5 * np.abs(raw - truth).sum()


def test_corrections_beat_raw_counts_and_intervals_cover_the_truth(classifier):
    """Repeated draws: a fresh validation set (confusion) and core sample each time."""
    rng = np.random.default_rng(2)
    truth = np.array([0.35, 0.3, 0.05, 0.2, 0.1])
    level, draws = 0.9, 30
    errors = {"raw": [], "acc": [], "em": []}
    covered = {"acc": [], "em": []}
    for _ in range(draws):
        confusion = classifier.validation_confusion(150, rng=rng)
        probs = classifier.classify(draw_sample(truth, 1000, rng=rng), rng=rng)
        predicted = np.bincount(probs.argmax(axis=1), minlength=K)
        estimates = {
            "raw": predicted / predicted.sum(),
            "acc": adjusted_classify_and_count(predicted, confusion_rates(confusion)),
            "em": em_prior_adjustment(probs, confusion.sum(axis=1)),
        }
        for method, estimate in estimates.items():
            errors[method].append(np.abs(estimate - truth).sum())
        replicates = {
            "acc": acc_bootstrap(predicted, confusion, n_boot=200, rng=rng),
            "em": em_bootstrap(probs, confusion.sum(axis=1), n_boot=200, rng=rng),
        }
        for method, reps in replicates.items():
            low, high = percentile_interval(reps, level=level)
            covered[method].append((low <= truth) & (truth <= high))
    mean_error = {m: np.mean(e) for m, e in errors.items()}
    assert mean_error["acc"] < 0.5 * mean_error["raw"]
    assert mean_error["em"] < 0.5 * mean_error["raw"]
    for method in ("acc", "em"):
        coverage = np.mean(covered[method])  # 150 class × draw trials
        assert 0.8 <= coverage <= 0.99, (method, coverage)


def test_absent_look_alike_is_corrected_towards_zero(classifier):
    """The paper's B. spissa case: a class absent from the sample, confused with a present one."""
    rng = np.random.default_rng(3)
    truth = np.array([0.3, 0.5, 0.0, 0.1, 0.1])
    confusion = classifier.validation_confusion(300, rng=rng)
    probs = classifier.classify(draw_sample(truth, 2000, rng=rng), rng=rng)
    predicted = np.bincount(probs.argmax(axis=1), minlength=K)
    raw = predicted[2] / predicted.sum()
    acc = adjusted_classify_and_count(predicted, confusion_rates(confusion))[2]
    em = em_prior_adjustment(probs, confusion.sum(axis=1))[2]
    assert raw > 0.08  # false positives from the look-alike
    assert acc < raw / 4 and em < raw / 4
    for reps in (
        acc_bootstrap(predicted, confusion, n_boot=100, rng=rng),
        em_bootstrap(probs, confusion.sum(axis=1), n_boot=100, rng=rng),
    ):
        low, high = percentile_interval(reps[:, 2], level=0.95)
        assert low < 1e-4 and high < raw  # zero is (numerically) inside, the raw value is not


def test_em_bootstrap_batches_give_the_same_replicates_shape(classifier):
    rng = np.random.default_rng(4)
    probs = classifier.classify(draw_sample(classifier.prior, 300, rng=rng), rng=rng)
    reps = em_bootstrap(probs, classifier.prior, n_boot=25, rng=rng, chunk_cells=300 * 7)
    assert reps.shape == (25, K)
    assert reps.sum(axis=1) == pytest.approx(np.ones(25))
