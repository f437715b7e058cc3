"""The training configuration: validated, written next to every run as ``config.yaml``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from foramflow.errors import ForamflowError
from foramflow.io.images import MAX_PIXELS

AUTO = "auto"

#: The fields that name files or folders: relative ones in a file are relative to its folder.
PATH_FIELDS = ("data", "out", "weights", "feature_cache")
#: What a run records in its config.yaml after the options: how it resolved them
#: (:mod:`foramflow.training.precision`). Not options: read back, they are set aside.
PRECISION_RECORD = "precision_choice"


class ConfigError(ForamflowError, ValueError):
    """Training options or a configuration file that cannot be used."""


class TrainConfig(BaseModel):
    """Everything that determines a training run. Unknown keys are an error, not ignored."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)

    data: str = Field(description="folder-per-class training set, or a ParticleTrieur .xml")
    include_predictions: bool = Field(
        False,
        description="ParticleTrieur project: train on its predictions (tagged auto) as well "
        "as on the images a person labelled",
    )
    out: str = Field(description="run folder to create")
    model: str = Field(
        "auto", description="a registered network, or auto: chosen for the set and the machine"
    )
    input_size: int | None = Field(
        None, ge=16, description="input side in pixels; None = the model's default"
    )
    channels: Literal[1, 3] | None = Field(
        None, description="1 grey, 3 colour; None = grey (auto: colour if the images are)"
    )
    filters: int = Field(8, ge=1)
    pool: Literal["max", "mean"] = "max"
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    dense: int = Field(512, ge=1)
    epochs: int | None = Field(None, ge=1, description="fixed number of epochs; None = ALRS")
    alrs_window_epochs: int | None = Field(None, ge=1, description="ALRS L; None = by set size")
    alrs_drops: int = Field(4, ge=1)
    max_epochs: int = Field(300, ge=1, description="safety cap in ALRS mode")
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    val_fraction: float = Field(0.2, gt=0, lt=1)
    min_per_class: int | None = Field(
        None, ge=1, description="drop smaller classes; None = the model's (40 for the paper's)"
    )
    class_weights: Literal["clamped", "none"] | None = Field(
        None,
        description="loss weights: the paper's clamped geometric-mean weights, or none; "
        "None = the model's",
    )
    augment: bool = True
    flips: bool = Field(
        False,
        description="mirror images in augmentation; transfer and top models: answer from "
        "the mirrored views too (off: coiling direction is a trait)",
    )
    optimizer: Literal["adam", "adamw"] | None = Field(None, description="None = the model's")
    weight_decay: float = Field(0.05, ge=0, description="AdamW's decoupled weight decay")
    schedule: Literal["alrs", "cosine"] | None = Field(
        None, description="alrs (the paper's) or warm-up + cosine over epochs; None = the model's"
    )
    warmup_epochs: float = Field(1.0, ge=0, description="cosine: epochs of linear warm-up")
    label_smoothing: float | None = Field(None, ge=0, lt=1, description="None = the model's")
    mixup: float = Field(0.0, ge=0, description="mixup Beta parameter; 0 = off")
    cutmix: float = Field(0.0, ge=0, description="cutmix Beta parameter; 0 = off")
    ema: float | None = Field(
        None, ge=0, lt=1, description="decay of a moving average of the weights; 0 = off"
    )
    patience: int | None = Field(None, ge=1, description="stop after this many epochs without")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    compile: Literal["auto", "on", "off"] = Field(
        "auto", description="torch.compile the training step; auto = on a GPU for 5 000+ images"
    )
    workers: int = Field(0, ge=0, description="image-decoding processes; 0 = one per core")
    max_pixels: int = Field(
        MAX_PIXELS, ge=1, description="larger images are skipped, refused before decoding"
    )
    cyclic: bool = Field(True, description="transfer models: cyclic slice/pool in the head")
    stages: bool = Field(
        True, description="transfer models: pool the backbone's last stages beside its last layer"
    )
    weights: str | None = Field(None, description="transfer models: backbone weights file")
    augmented_copies: int = Field(
        0, ge=0, description="transfer and top models: extra augmented copies of training images"
    )
    feature_cache: str | None = Field(None, description="transfer models: feature cache folder")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        from foramflow.models.registry import get_entry

        if self.input_size is not None and self.input_size % 2:
            raise ValueError(f"input_size must be even, not {self.input_size}")
        self._check_schedule()
        if self.model == AUTO:  # resolved for the set and the machine by train.auto
            return self
        entry = get_entry(self.model)
        if self.channels is None:
            self.channels = 1
        if self.input_size is None:
            self.input_size = entry.default_input_size
        own_schedule = self.schedule in (None, entry.recipe.get("schedule"))
        for name, value in entry.recipe.items():
            if name == "epochs" and not own_schedule:
                continue  # the recipe's epochs are its schedule's: ALRS chosen stops by itself
            if getattr(self, name) is None:
                setattr(self, name, value)
        self._check_schedule()
        return self

    def _check_schedule(self) -> None:
        if self.schedule == "cosine" and not self.epochs:
            raise ValueError("the cosine schedule needs a number of epochs")

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides) -> TrainConfig:
        """The YAML file's options (if any), overridden by those given that are not None.

        Relative paths in the file are taken from the file's folder, so that the file works
        from any working folder; the overrides' are the caller's. A problem is a
        :class:`ConfigError` naming the file.
        """
        values = {} if path is None else _read_options(Path(path))
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in err.errors()
            )
            where = f"{path}: " if path is not None else ""
            raise ConfigError(f"{where}invalid training options: {problems}") from None

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> TrainConfig:
        return cls.load(path, **overrides)

    def to_yaml(self, path: str | Path, *, precision_choice: dict | None = None) -> None:
        """Write the options with absolute paths, so the file works from any folder, and
        after them the run's precision of each stage, where given."""
        values = self.model_dump()
        for name in PATH_FIELDS:
            if values[name]:
                values[name] = os.path.abspath(values[name])
        if precision_choice is not None:
            values[PRECISION_RECORD] = precision_choice
        Path(path).write_text(yaml.safe_dump(values, sort_keys=False))


def read_precision_choice(path: str | Path) -> dict[str, dict]:
    """The precision of each stage recorded in a run's config.yaml (none where it has none)."""
    record = _read_yaml(Path(path)).get(PRECISION_RECORD)
    if not isinstance(record, dict):
        return {}
    return {
        stage: choice
        for stage, choice in record.items()
        if isinstance(choice, dict) and choice.get("precision") in ("fp32", "bf16")
    }


def _read_yaml(path: Path) -> dict:
    """A configuration file's mapping, its relative paths made relative to its folder."""
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value")
    for name in PATH_FIELDS:
        if isinstance(values.get(name), str) and values[name]:
            values[name] = os.path.join(path.parent, values[name])
    return values


def _read_options(path: Path) -> dict:
    """A configuration file's options: its mapping less the run's records."""
    values = _read_yaml(path)
    values.pop(PRECISION_RECORD, None)
    return values
