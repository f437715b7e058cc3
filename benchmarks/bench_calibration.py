"""What the temperature a training run fits on its validation split buys, per bundle.

Each bundle's validation probabilities (``validation.npz``, the network's own) are split in
two halves, class by class: the temperature is fitted on one half, as training fits it on
the whole split, and judged on the other. Printed per bundle: the expected calibration
error, the share of images left "unsure" at the bundle's threshold and the accuracy of the
rest, and the abundance error under label shift: samples of 500 images of the judging half
drawn with class mixes from a Dirichlet(0.3) (far from the training mix), whose class prior
EM estimates (plain, and corrected for its bias on the fitting half, as ``foramflow
abundance`` does). The error is the total variation distance from the sample's true mix
(half the summed absolute differences), the mean over the samples.

    python benchmarks/bench_calibration.py runs/recipes/auto/bundle runs/recipes/transfer/bundle
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from foramflow.abundance.correction import class_mix, corrected_em, em_prior_adjustment
from foramflow.bundle.engine import apply_temperature
from foramflow.bundle.folder import Bundle
from foramflow.bundle.validation import read_validation
from foramflow.evaluate.calibration import expected_calibration_error, fit_temperature


def halves(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A mask of half of each class's images, drawn at random."""
    mask = np.zeros(len(labels), bool)
    for k in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == k))
        mask[members[: len(members) // 2]] = True
    return mask


def label_shift_errors(probs, labels, fit, judge, *, samples: int, rng) -> tuple[float, float]:
    """Mean total variation of plain and corrected EM over shifted samples of ``judge``."""
    k = probs.shape[1]
    prior0 = class_mix(labels[fit], k)
    plain, corrected = [], []
    for _ in range(samples):
        counts = rng.multinomial(500, rng.dirichlet(np.full(k, 0.3)))
        pick = np.concatenate(
            [
                rng.choice(np.flatnonzero(judge & (labels == c)), n, replace=True)
                for c, n in enumerate(counts)
                if n
            ]
        )
        truth = counts / counts.sum()
        plain.append(np.abs(em_prior_adjustment(probs[pick], prior0) - truth).sum() / 2)
        found = corrected_em(probs[pick], probs[fit], labels[fit])
        corrected.append(np.abs(found - truth).sum() / 2)
    return float(np.mean(plain)), float(np.mean(corrected))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--samples", type=int, default=40, help="label-shifted samples")
    options = parser.parse_args()
    print(
        "| bundle | temperature | ECE | unsure | accuracy of the rest | EM error | "
        "corrected EM error |\n|---|---|---|---|---|---|---|"
    )
    for path in options.bundles:
        bundle = Bundle.load(path)
        validation = read_validation(bundle)
        if validation is None:
            print(f"| {path} | no validation.npz | | | | | |")
            continue
        probs, labels = validation.probabilities, validation.labels
        rng = np.random.default_rng(0)
        fit = halves(labels, rng)
        judge = ~fit
        threshold = bundle.threshold
        temperature = fit_temperature(probs[fit], labels[fit])
        for name, t in (("none", 1.0), (f"{temperature:.3f}", temperature)):
            scaled = apply_temperature(probs, t)
            top = scaled[judge].max(axis=1)
            right = scaled[judge].argmax(axis=1) == labels[judge]
            em, cem = label_shift_errors(
                scaled, labels, fit, judge, samples=options.samples, rng=np.random.default_rng(1)
            )
            ece = expected_calibration_error(scaled[judge], labels[judge])
            print(
                f"| {path} | {name} | {ece:.3f} | {np.mean(top <= threshold):.1%} | "
                f"{right[top > threshold].mean():.1%} | "
                f"{em:.3f} | {cem:.3f} |"
            )


if __name__ == "__main__":
    main()
