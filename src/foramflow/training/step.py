"""The train step (method §5): a labelled image set to an evaluated model bundle.

The registry entry of the model names its kind, and
:data:`~foramflow.training.trainers.TRAINERS` the trainer of each kind; every trainer
writes the same run folder (:mod:`foramflow.training.run_folder`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from foramflow.bundle.schema import ONE_VIEW_BUNDLE, RUN_BUNDLE
from foramflow.io.files import naming_the_file
from foramflow.progress import Progress, Quiet
from foramflow.training.auto import resolve_auto
from foramflow.training.config import AUTO, TrainConfig
from foramflow.training.run_folder import METRICS_FILE, check_run_folder


@dataclass
class TrainResult:
    """A finished training run: its folder, model bundle, report and validation scores."""

    out: Path
    bundle: Path
    report: Path  # evaluation/report.html
    metrics: dict  # validation metrics of the bundle (accuracy, macro_f1, …)
    classes: list[str]
    skipped: dict[str, str]  # printable path: why the image was not used

    @property
    def fast_bundle(self) -> Path | None:
        """The bundle that reads each image once, where the run wrote one."""
        folder = self.out / ONE_VIEW_BUNDLE
        return folder if folder.is_dir() else None


def train(
    images: str | Path,
    out: str | Path,
    *,
    model: str | None = None,
    config: TrainConfig | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    **options,
) -> TrainResult:
    """Train a network on the labelled ``images`` (a folder per class, or a ParticleTrieur
    project), then export, evaluate and report it, in the new run folder ``out``.

    ``model`` is a registered network, or ``"auto"`` (the default, unless ``config`` names
    one): chosen for the set and the machine. The other options are :class:`TrainConfig`'s
    fields, as keywords, over ``config`` where one is given (its ``data`` and ``out`` become
    ``images`` and ``out``); an option left at ``None`` keeps the config's value, or the
    model's default. ``resume``
    continues an interrupted run from its last checkpoint (full networks and tops).
    """
    # torch and the networks load with the first run, not with ``from foramflow import train``
    from foramflow.models.registry import get_entry
    from foramflow.training.trainers import TRAINERS

    progress = progress or Quiet()
    config = configure(images, out, model=model, config=config, **options)
    check_run_folder(config.out, resume=resume)
    if config.model == AUTO and not resume:  # a resumed run's config.yaml names its model
        config = resolve_auto(config, progress)
    trainer = TRAINERS[get_entry(config.model).kind](config, progress=progress, resume=resume)
    with naming_the_file(config.out):  # a full disk in a writer that does not name its file
        report = trainer.run()
    return TrainResult(
        out=trainer.out,
        bundle=trainer.out / RUN_BUNDLE,
        report=report,
        metrics=json.loads((trainer.out / METRICS_FILE).read_text()),
        classes=list(trainer.data.image_set.classes),
        skipped=dict(trainer.data.skipped),
    )


def configure(
    images: str | Path, out: str | Path, *, config: TrainConfig | None = None, **options
) -> TrainConfig:
    """The run's configuration: ``config`` (or the defaults) with the options given that are
    not None, validated; ``config`` itself where they change nothing."""
    unknown = sorted(options.keys() - (TrainConfig.model_fields.keys() - {"data", "out"}))
    if unknown:
        raise TypeError(f"train() got unexpected keyword argument(s): {', '.join(unknown)}")
    given = {"data": str(images), "out": str(out)}
    given.update({name: value for name, value in options.items() if value is not None})
    if config is None:
        return TrainConfig.load(None, **given)
    if all(getattr(config, name) == value for name, value in given.items()):
        return config
    return TrainConfig.load(None, **{**config.model_dump(), **given})
