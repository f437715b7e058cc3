"""Correcting relative abundances for the classifier's known errors.

Counting the classifier's labels ("classify and count") is biased whenever the classifier errs:
a species that is absent still collects the false positives of its look-alikes (the paper's
5 % *B. spissa* where human counts are zero), and a rare species loses more to its neighbours
than it gains. Two standard estimators of the true class proportions of a sample
(quantification under prior shift; González et al. 2017, ACM Computing Surveys 50, 74):

**Adjusted classify and count (ACC)** — Forman 2008 (Data Min. Knowl. Disc. 17, 164–206);
Buonaccorsi 2010, *Measurement Error*, §3. With ``C[i, j] = P(predicted j | true i)`` estimated
from the validation confusion matrix, the expected predicted proportions are ``q = Cᵀ p``.
We solve ``min ||Cᵀ p − q̂||²`` subject to ``p ≥ 0`` and ``Σ p = 1`` — the constrained least
squares avoids the negative proportions of the plain inverse — with non-negative least squares
(Lawson & Hanson, :func:`scipy.optimize.nnls`), the sum-to-one equality imposed by a heavily
weighted extra row. The interval is a parametric bootstrap that redraws both sources of error:
the sample's predicted counts (multinomial, n images) and every row of the confusion matrix
(multinomial, the validation count of that class), so a small validation set widens it.

**EM prior adjustment** — Saerens, Latinne & Decaestecker 2002 (Neural Computation 14, 21–41).
If the probabilities are calibrated posteriors under the training prior π₀, the posteriors
under a sample's prior π are ``p(y|x) π(y)/π₀(y)`` renormalised; alternating that with
``π = mean posterior`` is EM for the maximum-likelihood π. It uses every image's full
probability vector, not only its top class, hence is usually more precise than ACC, but it
trusts the calibration, and a network's probabilities are never calibrated class by class.
Where the bundle keeps its validation split's probabilities
(:mod:`foramflow.bundle.validation`), the validation set measures that error: reweighted to
the sample's estimate π̂ (image i by π̂(yᵢ)/π₀(yᵢ)) it is a sample of known composition π̂, and
EM's answer on it, minus π̂, is EM's bias there, which is subtracted (a bootstrap bias
correction, Efron & Tibshirani 1993, §10.6). π₀ is the validation split's class mix (a
stratified share of the training set): the prior that a network with the class weights
divided out (:mod:`foramflow.training.prior`) predicts under, so the prior is corrected once.
The interval is a double bootstrap: each replicate resamples the sample's images and, class
by class, the validation set, and corrects the replicate's estimate with its own validation
resample, so that a small validation set widens it. Without the validation probabilities EM
runs uncorrected and its interval resamples only the sample's images.

Both bootstraps give percentile intervals (Efron & Tibshirani 1993, ch. 13). They hold the
classifier's behaviour fixed between the validation set and the core; a sample imaged
differently breaks that assumption (see :mod:`foramflow.abundance.drift`).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls

# Weight of the sum-to-one row in the ACC least squares: large against residuals of order
# 1/sqrt(n), small enough to keep the system well conditioned.
_SUM_WEIGHT = 1e3
# Bootstrap replicates whose validation-set EM runs at once (memory: this × validation images).
_CHUNK = 100


def confusion_rates(confusion) -> np.ndarray:
    """Row-normalise a confusion matrix (rows true, columns predicted) to P(pred | true).

    A class with no validation images gets an identity row (assumed always right): there is
    no evidence about it either way.
    """
    matrix = np.asarray(confusion, float)
    totals = matrix.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = matrix / totals
    empty = totals[:, 0] == 0
    rates[empty] = np.eye(len(matrix))[empty]
    return rates


def adjusted_classify_and_count(predicted, rates) -> np.ndarray:
    """True class proportions from predicted counts (or proportions) and P(pred | true).

    Parameters
    ----------
    predicted : (K,) array
        Images per predicted class (top class, no threshold), or their proportions.
    rates : (K, K) array
        ``rates[i, j] = P(predicted j | true i)``, from :func:`confusion_rates`.
    """
    q = np.asarray(predicted, float)
    q = q / q.sum()
    k = len(q)
    system = np.vstack([np.asarray(rates, float).T, np.full((1, k), _SUM_WEIGHT)])
    target = np.append(q, _SUM_WEIGHT)
    p, _ = nnls(system, target)
    return p / p.sum()


def acc_bootstrap(
    predicted, confusion, *, n_boot: int = 1000, rng: np.random.Generator
) -> np.ndarray:
    """Parametric bootstrap replicates (n_boot, K) of the ACC estimate.

    Redraws the predicted counts from Multinomial(n, q̂) and each confusion row from
    Multinomial(n_i, ĉ_i), then re-solves.
    """
    predicted = np.asarray(predicted, float)
    confusion = np.asarray(confusion)
    n = int(predicted.sum())
    draws_pred = rng.multinomial(n, predicted / n, size=n_boot)
    rates = confusion_rates(confusion)
    row_totals = confusion.sum(axis=1).astype(int)
    draws_conf = np.stack(
        [rng.multinomial(row_totals[i], rates[i], size=n_boot) for i in range(len(rates))],
        axis=1,
    )  # (n_boot, K, K)
    draws_conf[:, row_totals == 0] = confusion[row_totals == 0]
    return np.stack(
        [
            adjusted_classify_and_count(draws_pred[b], confusion_rates(draws_conf[b]))
            for b in range(n_boot)
        ]
    )


def em_prior_adjustment(
    probs,
    train_prior,
    *,
    weights=None,
    start=None,
    tol: float = 1e-7,
    max_iter: int = 5000,
) -> np.ndarray:
    """Maximum-likelihood class prior of a sample by EM (Saerens et al. 2002).

    Parameters
    ----------
    probs : (N, K) array
        Calibrated class probabilities of the sample's images (under the training prior).
    train_prior : (K,) array
        Class prior of the training set.
    weights : (B, N) array, optional
        Image weights (e.g. bootstrap counts); the EM runs for all B weightings at once.
    start : (K,) or (B, K) array, optional
        Where the iterations start (default: the training prior).

    Returns
    -------
    (K,) prior, or (B, K) priors when ``weights`` is given.

    Notes
    -----
    With ``r = π / π₀`` the adjusted posterior of image n is ``P[n] r / (P[n] · r)``, so one
    step is ``π ← r ⊙ ((w / (r Pᵀ)) P) / Σw``: two matrix products over (B, N), never a
    (B, N, K) array. Each weighting stops once no class moves by ``tol``. EM approaches an
    absent class's zero only in the limit, so such a class ends at a tiny positive value.
    """
    probs = np.asarray(probs, float)
    prior0 = np.clip(np.asarray(train_prior, float), 1e-12, None)
    prior0 = prior0 / prior0.sum()
    single = weights is None
    w = np.ones((1, len(probs))) if single else np.atleast_2d(np.asarray(weights, float))
    total = w.sum(axis=1, keepdims=True)
    first = prior0 if start is None else np.asarray(start, float)
    prior = np.broadcast_to(first, (len(w), len(prior0))).copy()
    scaled = probs / prior0  # P[n, k] / π₀[k]; the normaliser of each row cancels
    active = np.arange(len(w))  # replicates still moving
    for _ in range(max_iter):
        current = prior[active]
        norm = current @ scaled.T  # (B, N)
        # An image no class of the current prior explains (all zero) adds nothing.
        share = np.divide(w[active], norm, out=np.zeros_like(norm), where=norm > 0)
        new = current * (share @ scaled) / total[active]
        prior[active] = new
        active = active[np.max(np.abs(new - current), axis=1) >= tol]
        if not len(active):
            break
    return prior[0] if single else prior


def em_bootstrap(
    probs, train_prior, *, n_boot: int = 1000, rng: np.random.Generator, chunk_cells: int = 4e6
) -> np.ndarray:
    """Non-parametric bootstrap replicates (n_boot, K) of the EM prior.

    Resamples the sample's images with replacement as multinomial weights, processing as many
    replicates at once as fit in ``chunk_cells`` (B × N) cells.
    """
    n = len(probs)
    per_chunk = max(1, int(chunk_cells // max(n, 1)))
    out = []
    for first in range(0, n_boot, per_chunk):
        size = min(per_chunk, n_boot - first)
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=size)
        out.append(em_prior_adjustment(probs, train_prior, weights=weights))
    return np.concatenate(out)


def stratified_resamples(true, n_classes: int, n_boot: int, rng) -> np.ndarray:
    """Bootstrap multiplicities (n_boot, N) of labelled images, resampled class by class, so
    that every replicate keeps each class's count (the validation split is stratified)."""
    true = np.asarray(true)
    weights = np.zeros((n_boot, len(true)))
    for k in range(n_classes):
        members = np.flatnonzero(true == k)
        if len(members):
            even = np.full(len(members), 1.0 / len(members))
            weights[:, members] = rng.multinomial(len(members), even, size=n_boot)
    return weights


def class_mix(true, n_classes: int) -> np.ndarray:
    """The share of each class among labelled images: the validation split's, which is the
    prior a network with its class weights divided out predicts under."""
    true = np.asarray(true)
    return np.bincount(true, minlength=n_classes) / len(true)


def em_bias(val_probs, val_true, priors, *, weights=None) -> np.ndarray:
    """EM's error (B, K) on the validation set reweighted to each prior of ``priors`` (B, K).

    ``weights`` (B, N_val) are bootstrap multiplicities of the validation images (default
    one each). The EM starts at the target prior, near which it ends, and stops at a
    tolerance far below any abundance worth reading.
    """
    val_true = np.asarray(val_true)
    priors = np.atleast_2d(np.asarray(priors, float))
    k = priors.shape[1]
    prior0 = class_mix(val_true, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(prior0 > 0, priors / prior0, 0.0)  # (B, K)
    multiplicity = np.ones((len(priors), len(val_true))) if weights is None else weights
    image_weights = multiplicity * ratio[:, val_true]
    found = em_prior_adjustment(val_probs, prior0, weights=image_weights, start=priors, tol=1e-6)
    return found - priors


def _corrected(estimates, val_probs, val_true, weights) -> np.ndarray:
    """``estimates`` (B, K) less EM's bias at each, on the (resampled) validation set."""
    estimates = np.atleast_2d(estimates)
    bias = em_bias(val_probs, val_true, estimates, weights=weights)
    corrected = np.clip(estimates - bias, 0.0, None)
    return corrected / corrected.sum(axis=1, keepdims=True)


def corrected_em(probs, val_probs, val_true) -> np.ndarray:
    """EM prior of a sample, corrected by EM's bias on the validation set (module notes)."""
    k = np.asarray(probs).shape[1]
    prior0 = class_mix(val_true, k)
    return _corrected(em_prior_adjustment(probs, prior0), val_probs, val_true, None)[0]


def corrected_em_bootstrap(
    probs, val_probs, val_true, *, n_boot: int = 1000, rng: np.random.Generator
) -> np.ndarray:
    """Double-bootstrap replicates (n_boot, K) of :func:`corrected_em`: the sample's images
    and, class by class, the validation images are resampled in each."""
    k = np.asarray(probs).shape[1]
    prior0 = class_mix(val_true, k)
    estimates = em_bootstrap(probs, prior0, n_boot=n_boot, rng=rng)
    resamples = stratified_resamples(val_true, k, n_boot, rng)
    return np.concatenate(
        [
            _corrected(estimates[i : i + _CHUNK], val_probs, val_true, resamples[i : i + _CHUNK])
            for i in range(0, n_boot, _CHUNK)
        ]
    )


def percentile_interval(replicates, *, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval along the first axis."""
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(np.asarray(replicates), [alpha, 1.0 - alpha], axis=0)
    return low, high
