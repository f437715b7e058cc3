"""The run folder of a training run: its file names, its checks, the tables written first.

Run folder::

    config.yaml            the resolved configuration
    log.csv                one row per epoch, appended as training goes
    checkpoint_best.pt     weights with the best validation accuracy
    checkpoint_last.pt     everything needed to resume after an interruption
    skipped_images.csv     images that could not be read or listed (the run carried on)
    split.csv              every image with its class and its part (train / validation)
    metrics.json           the bundle's validation metrics
    bundle/                the exported model bundle
    bundle_fast/           networks that average views of an image only: the same weights
                           reading each image once (a quarter of the work, a little less
                           accurate)
    evaluation/            metrics tables, figures and report.html
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from foramflow.errors import ForamflowError
from foramflow.io.files import naming_the_file

if TYPE_CHECKING:
    from foramflow.training.prepared import PreparedData

CONFIG_FILE = "config.yaml"
LOG_FILE = "log.csv"
BEST_CHECKPOINT = "checkpoint_best.pt"
LAST_CHECKPOINT = "checkpoint_last.pt"
SKIPPED_FILE = "skipped_images.csv"
SPLIT_FILE = "split.csv"
METRICS_FILE = "metrics.json"


class RunFolderError(ForamflowError):
    """The run folder cannot take this run."""


class RunFolderExists(RunFolderError, FileExistsError):
    """A new run was asked for in a folder that already holds files."""


class NothingToResume(RunFolderError, FileNotFoundError):
    """A run was to be resumed from a folder without its last checkpoint."""


class CannotResume(RunFolderError, ValueError):
    """A run of this kind cannot be resumed."""


def check_run_folder(out: Path, *, resume: bool) -> None:
    """A new run needs an empty folder; a resumed one its last checkpoint."""
    out = Path(out)
    if not resume and out.exists() and any(out.iterdir()):
        raise RunFolderExists(
            f"{out}: run folder already exists and is not empty "
            "(choose another output folder, or resume the run)"
        )
    if resume and not (out / LAST_CHECKPOINT).is_file():
        raise NothingToResume(f"{out}: nothing to resume (no {LAST_CHECKPOINT})")


def write_split(out: Path, data: PreparedData) -> None:
    """``split.csv`` (every image used, its class and part) and ``skipped_images.csv``."""
    part = np.full(len(data.labels), "train", dtype=object)
    part[data.val_index] = "validation"
    split = pd.DataFrame(
        {
            "path": [str(p) for p in data.paths],
            "class": [data.image_set.classes[k] for k in data.labels],
            "part": part,
        }
    )
    skipped = pd.DataFrame(sorted(data.skipped.items()), columns=["path", "reason"])
    for frame, name in ((split, SPLIT_FILE), (skipped, SKIPPED_FILE)):
        with naming_the_file(out / name):
            frame.to_csv(out / name, index=False)
