"""foramflow: foraminifera images to down-core abundances.

Each step of the method is one function, which the ``foramflow`` command also runs::

    stack_folder        Z-stacks to all-in-focus images with depth maps
    segment_folder      tray images to one crop per particle, measured
    train               a labelled image set to a model bundle, evaluated
    calibrate_bundle    temperature scaling and the unsure threshold of a bundle
    evaluate_folder     a bundle scored on a labelled image set
    classify_folder     every image of a core classified, counted per sample
    estimate_abundance  down-core relative abundances, corrected, against human counts

They are imported on first use: ``import foramflow`` loads none of numpy, pandas or torch.
Every step takes a ``progress`` (:mod:`foramflow.progress`), returns a result that lists
what it wrote, and raises :class:`~foramflow.errors.ForamflowError` for a problem with its
inputs.
"""

import os

from foramflow._lazy import lazy_names
from foramflow.version import __version__ as __version__

# OpenMP threads that spin while they wait for each other hold a core that another program
# needs: on a computer doing other work, training then ran at a third of its speed. Waiting
# passively costs nothing measurable on a quiet one (benchmarks/bench_busy.py). OpenMP reads
# this once, when PyTorch loads it; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_STEPS = {
    "stack_folder": "foramflow.imaging.steps",
    "segment_folder": "foramflow.imaging.steps",
    "calibrate_bundle": "foramflow.evaluate.calibration",
    "evaluate_folder": "foramflow.evaluate.folder",
    "classify_folder": "foramflow.classify.runner",
    "estimate_abundance": "foramflow.abundance.steps",
}

__all__ = [
    "calibrate_bundle",
    "classify_folder",
    "estimate_abundance",
    "evaluate_folder",
    "segment_folder",
    "stack_folder",
    "train",
]

__getattr__, __dir__ = lazy_names(__name__, {**_STEPS, "train": "foramflow.training.step"})
