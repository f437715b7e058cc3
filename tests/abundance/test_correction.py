"""Error correction against a simulated classifier with known truth."""

import numpy as np
import pytest

from foramflow.abundance.correction import (
    acc_bootstrap,
    adjusted_classify_and_count,
    confusion_rates,
    corrected_em,
    corrected_em_bootstrap,
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


def _overconfident(probs, factor: float = 2.0):
    """A network's probabilities: sharper than the truth (logits × ``factor``)."""
    logits = factor * np.log(np.clip(probs, 1e-300, None))
    logits -= logits.max(axis=1, keepdims=True)
    sharp = np.exp(logits)
    return sharp / sharp.sum(axis=1, keepdims=True)


def _validation_set(classifier, per_class: int, rng, transform=_overconfident):
    true = np.repeat(np.arange(K), per_class)
    return transform(classifier.classify(true, rng=rng)), true


def test_corrected_em_intervals_cover_the_truth_at_95_percent_where_plain_em_does_not(
    classifier,
):
    """Over-confident probabilities and a small validation set, drawn afresh each time: the
    bias-corrected EM's double-bootstrap intervals reach the nominal 95 %, ACC's too; plain
    EM's (images resampled only) fall short."""
    rng = np.random.default_rng(5)
    truth = np.array([0.45, 0.05, 0.3, 0.15, 0.05])
    covered = {"acc": [], "em": [], "plain": []}
    for _ in range(40):
        val_probs, val_true = _validation_set(classifier, 60, rng)
        confusion = np.bincount(val_true * K + val_probs.argmax(axis=1), minlength=K * K).reshape(
            K, K
        )
        probs = _overconfident(classifier.classify(draw_sample(truth, 600, rng=rng), rng=rng))
        predicted = np.bincount(probs.argmax(axis=1), minlength=K)
        replicates = {
            "acc": acc_bootstrap(predicted, confusion, n_boot=200, rng=rng),
            "em": corrected_em_bootstrap(probs, val_probs, val_true, n_boot=200, rng=rng),
            "plain": em_bootstrap(probs, confusion.sum(axis=1), n_boot=200, rng=rng),
        }
        for method, reps in replicates.items():
            low, high = percentile_interval(reps, level=0.95)
            covered[method].append((low <= truth + 1e-4) & (truth <= high + 1e-4))
    coverage = {method: np.mean(hits) for method, hits in covered.items()}  # 200 intervals
    assert 0.9 <= coverage["acc"] <= 0.995, coverage
    assert 0.9 <= coverage["em"] <= 0.995, coverage
    assert coverage["plain"] < 0.85, coverage


def test_corrected_em_removes_the_bias_of_miscalibrated_probabilities(classifier):
    rng = np.random.default_rng(6)
    truth = np.array([0.45, 0.05, 0.3, 0.15, 0.05])
    val_probs, val_true = _validation_set(classifier, 400, rng)
    probs = _overconfident(classifier.classify(draw_sample(truth, 20000, rng=rng), rng=rng))
    plain = em_prior_adjustment(probs, np.full(K, 1 / K))
    corrected = corrected_em(probs, val_probs, val_true)
    assert np.abs(plain - truth).max() > 0.03
    assert corrected == pytest.approx(truth, abs=0.015)


def test_the_prior_is_corrected_once(classifier):
    """A network whose class weights were divided out (the bundle's prior correction)
    outputs posteriors under the training prior, the validation split's class mix, which EM
    takes as its start: corrected once, it finds the truth. Dividing by the weights again
    would miss class 1 (weight 3) by a factor of about 3."""
    rng = np.random.default_rng(7)
    truth = np.array([0.45, 0.05, 0.3, 0.15, 0.05])
    val_probs, val_true = _validation_set(classifier, 1000, rng, transform=lambda p: p)
    probs = classifier.classify(draw_sample(truth, 20000, rng=rng), rng=rng)
    assert corrected_em(probs, val_probs, val_true) == pytest.approx(truth, abs=0.02)


def test_a_taxon_more_often_unsure_is_not_under_counted(classifier):
    """Look-alikes 1 and 2 are more often unsure than the rest: leaving the unsure images
    out under-counts them; the corrected estimates, which use every image, do not."""
    from foramflow.bundle.decisions import DecisionRule

    rng = np.random.default_rng(8)
    truth = np.array([0.3, 0.3, 0.2, 0.1, 0.1])
    rule = DecisionRule(tuple(map(str, range(K))), 0.8)
    sure, acc, em = [], [], []
    for _ in range(30):  # a fresh validation split and sample each time
        val_probs, val_true = _validation_set(classifier, 100, rng, transform=lambda p: p)
        confusion = np.bincount(val_true * K + val_probs.argmax(axis=1), minlength=K * K)
        rates = confusion_rates(confusion.reshape(K, K))
        probs = classifier.classify(draw_sample(truth, 500, rng=rng), rng=rng)
        _, _, status = rule.decide(probs)
        kept = probs[np.asarray(status) == "ok"].argmax(axis=1)
        sure.append(np.bincount(kept, minlength=K) / len(kept))
        predicted = np.bincount(probs.argmax(axis=1), minlength=K)
        acc.append(adjusted_classify_and_count(predicted, rates))
        em.append(corrected_em(probs, val_probs, val_true))
    look_alikes = [1, 2]
    assert (np.mean(sure, axis=0)[look_alikes] - truth[look_alikes]).sum() < -0.04
    for estimates in (acc, em):
        bias = np.mean(estimates, axis=0) - truth
        assert np.abs(bias).max() < 0.012, bias


def test_the_abundance_step_corrects_with_the_unsure_images_too(classifier):
    """The corrected estimates of a core count its unsure images (left out of the raw
    counts only), and EM uses the validation probabilities when the bundle keeps them."""
    import pandas as pd

    from foramflow.abundance.analysis import Confusion, analyse_core
    from foramflow.bundle.decisions import DecisionRule

    rng = np.random.default_rng(9)
    labels = [f"c{k}" for k in range(K)]
    val_probs, val_true = _validation_set(classifier, 100, rng, transform=lambda p: p)
    matrix = np.bincount(val_true * K + val_probs.argmax(axis=1), minlength=K * K)
    confusion = Confusion(labels, matrix.reshape(K, K), probabilities=val_probs, true=val_true)
    probs = classifier.classify(draw_sample([0.3, 0.3, 0.2, 0.1, 0.1], 400, rng=rng), rng=rng)
    classes, scores, status = DecisionRule(tuple(labels), 0.8).decide(probs)
    table = pd.DataFrame({"path": [f"s/{i}.png" for i in range(len(probs))], "sample": "s"})
    table["depth"], table["class"], table["score"] = 1.0, classes, scores
    table["status"], table["error"] = status, ""
    for k, label in enumerate(labels):
        table[f"prob_{label}"] = probs[:, k]
    assert 0.1 < (table["status"] == "unsure").mean() < 0.9
    result = analyse_core(table, confusion=confusion, n_boot=20)
    estimates = result.abundance.set_index(["method", "taxon"])["fraction"]
    predicted = np.bincount(probs.argmax(axis=1), minlength=K)
    acc = adjusted_classify_and_count(predicted, confusion_rates(matrix.reshape(K, K)))
    em = corrected_em(probs, val_probs, val_true)
    np.testing.assert_allclose(estimates["acc"].reindex(labels), acc, atol=1e-9)
    np.testing.assert_allclose(estimates["em"].reindex(labels), em, atol=1e-9)
    sure = np.bincount(probs[table["status"] == "ok"].argmax(axis=1), minlength=K)
    np.testing.assert_allclose(estimates["raw"].reindex(labels), sure / sure.sum())
