"""How big a demo run is: the core, the training set, the network and its training."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Profile:
    """Sizes of one demo run; the same profile and seed give the same data.

    Attributes
    ----------
    n_samples, particles_per_sample
        The synthetic core: samples down 10 m of core, particles spread on trays.
    n_zstacks, zstack_particles
        Z-stacks of small trays on which focus stacking is checked against the truth.
    train_per_class
        Labelled crops per class in the training set.
    input_size, epochs, batch_size
        Network input (px), fixed number of training epochs, and images per batch.
    min_per_class
        Classes with fewer labelled crops are dropped before training.
    bootstrap
        Bootstrap replicates behind the intervals of the corrected abundances.
    """

    name: str
    n_samples: int
    particles_per_sample: int
    n_zstacks: int
    zstack_particles: int
    train_per_class: int
    input_size: int
    epochs: int
    batch_size: int = 64
    min_per_class: int = 40
    bootstrap: int = 200
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT = Profile(
    name="default",
    n_samples=16,
    particles_per_sample=150,
    n_zstacks=2,
    zstack_particles=8,
    train_per_class=300,
    input_size=48,
    epochs=14,
)
QUICK = Profile(
    name="quick",
    n_samples=8,
    particles_per_sample=60,
    n_zstacks=1,
    zstack_particles=6,
    train_per_class=100,
    input_size=32,
    epochs=8,
    batch_size=32,
)
TINY = Profile(
    name="tiny",
    n_samples=3,
    particles_per_sample=8,
    n_zstacks=1,
    zstack_particles=3,
    train_per_class=10,
    input_size=32,
    epochs=1,
    batch_size=16,
    min_per_class=2,
    bootstrap=10,
)
"""For the test suite: every stage runs, nothing is learned."""
