"""A classifier with known behaviour, for checking abundance estimators against the truth.

Each class is an isotropic Gaussian cloud in a small feature space; the classifier returns
the exact Bayes posterior under the training prior, so its probabilities are calibrated by
construction and its confusions follow from how close the class means lie. Placing two
means close together makes a look-alike pair (the paper's *Bolivina* species). Lowering the
``contrast`` of a sample's features (< 1: the class clouds drawn towards their common centre)
mimics images from another imaging set-up: the classifier grows unsure and errs more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SimulatedClassifier:
    """Gaussian class clouds (``means``, unit noise) and a Bayes posterior under ``prior``."""

    means: np.ndarray  # (K, d)
    prior: np.ndarray  # (K,) training prior

    @classmethod
    def make(
        cls,
        n_classes: int,
        *,
        separation: float,
        lookalikes: Sequence[tuple[int, int, float]] = (),
        prior=None,
        rng: np.random.Generator,
    ) -> SimulatedClassifier:
        """Class means on a simplex scaled by ``separation``; ``(i, j, distance)`` pulls class
        j to within ``distance`` of class i in a random direction."""
        means = np.eye(n_classes) * separation / np.sqrt(2.0)
        for i, j, distance in lookalikes:
            direction = rng.normal(size=n_classes)
            means[j] = means[i] + distance * direction / np.linalg.norm(direction)
        prior = np.full(n_classes, 1.0 / n_classes) if prior is None else np.asarray(prior)
        return cls(means=means, prior=prior / prior.sum())

    def features(self, true_classes, *, rng: np.random.Generator, contrast: float = 1.0):
        true_classes = np.asarray(true_classes)
        centre = self.means.mean(axis=0)
        noise = rng.normal(size=(len(true_classes), self.means.shape[1]))
        return centre + contrast * (self.means[true_classes] - centre) + noise

    def posterior(self, features) -> np.ndarray:
        sq = ((features[:, None, :] - self.means[None]) ** 2).sum(axis=2)
        logits = np.log(self.prior) - 0.5 * sq
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return probs / probs.sum(axis=1, keepdims=True)

    def classify(self, true_classes, *, rng: np.random.Generator, contrast: float = 1.0):
        """Probabilities (N, K) for images of the given true classes."""
        return self.posterior(self.features(true_classes, rng=rng, contrast=contrast))

    def validation_confusion(self, per_class, *, rng: np.random.Generator) -> np.ndarray:
        """Confusion counts (rows true, columns top class) on a drawn validation set."""
        per_class = np.broadcast_to(np.asarray(per_class, int), (len(self.prior),))
        truth = np.repeat(np.arange(len(self.prior)), per_class)
        predicted = self.classify(truth, rng=rng).argmax(axis=1)
        k = len(self.prior)
        return np.bincount(truth * k + predicted, minlength=k * k).reshape(k, k)


def draw_sample(proportions, n_images: int, *, rng: np.random.Generator) -> np.ndarray:
    """True classes of ``n_images`` images drawn from the given class proportions."""
    proportions = np.asarray(proportions, float)
    return rng.choice(len(proportions), size=n_images, p=proportions / proportions.sum())
