"""What every trainer shares: the run's set-up, the fit loop's settings and optimizer, the
call of the one fit loop, and validation on the validation split.

A trainer (:mod:`~foramflow.training.full`, :mod:`~foramflow.training.transfer`,
:mod:`~foramflow.training.top`) subclasses :class:`Trainer` and implements ``run()``: from
the prepared image set (:meth:`Trainer.start`) to the report of the exported bundle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from foramflow.data.split import loss_weights
from foramflow.io.files import naming_the_file
from foramflow.progress import Progress, Quiet
from foramflow.training.config import AUTO, TrainConfig, read_precision_choice
from foramflow.training.device import resolve_device, use_bf16
from foramflow.training.fit import Batches, FitSettings, fit
from foramflow.training.frozen_features import FrozenFeatures, extractor_trial
from foramflow.training.precision import FEATURES, Step, describe, fixed_choice, measured_choice
from foramflow.training.prepared import PreparedData, prepare_data
from foramflow.training.run_folder import CONFIG_FILE, check_run_folder, write_split
from foramflow.training.schedule import default_window_epochs


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch as float32 on ``device``, channels-last when it is a batch of images."""
    x = x.to(device, non_blocking=True).float()
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


@torch.no_grad()
def predict_logits(
    network: torch.nn.Module,
    images: np.ndarray,
    *,
    device: torch.device,
    bf16: bool,
    batch_size: int = 256,
) -> torch.Tensor:
    """Logits (N, K) in eval mode, batch by batch."""
    network.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = to_device(torch.from_numpy(images[start : start + batch_size]), device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out.append(network(x).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


class Trainer:
    """One training run of a resolved configuration. ``run()`` trains (or resumes), then
    exports and evaluates, and returns the report's path."""

    def __init__(
        self, config: TrainConfig, *, progress: Progress | None = None, resume: bool = False
    ):
        self.progress = progress or Quiet()
        if config.model == AUTO:
            raise ValueError("resolve model 'auto' first (foramflow.training.auto.resolve_auto)")
        self.config = config
        self.out = Path(config.out)
        self.resume = resume
        check_run_folder(self.out, resume=resume)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(config.device)
        #: The precision of each stage (FEATURES, EPOCHS) and how it was chosen (see
        #: :mod:`foramflow.training.precision`), as :meth:`settle_precision` settles them.
        self._recorded = self._recorded_choices() if resume else {}
        # a resumed run rewrites config.yaml before it settles anything: keep what it holds
        self.precision_choices: dict[str, dict] = dict(self._recorded)
        self.bf16 = False  # the epochs' precision, once settled

    def run(self) -> Path:
        raise NotImplementedError

    def start(self) -> PreparedData:
        """Seed, write config.yaml, and load, preprocess and split the image set."""
        torch.manual_seed(self.config.seed)
        if self.device.type == "cpu":
            torch.set_num_threads(os.cpu_count() or 1)
        self._write_config()
        self.data = prepare_data(self.config, self.progress)
        write_split(self.out, self.data)
        return self.data

    def settle_precision(
        self, stage: str, timed: str, candidates: Callable[[], dict[str, Step]]
    ) -> bool:
        """Whether ``stage`` (FEATURES or EPOCHS) runs under bf16 autocast: as given, as a
        resumed run started, or, where a trial must (``--precision auto``, a CPU with bf16),
        as kept for this machine or timed now on the steps ``candidates()`` builds (``timed``
        says what they do). The choice is recorded in config.yaml. Call it once the network
        and the images are ready, before anything runs in that stage's precision."""
        choice = self._recorded.get(stage) if self.resume else None
        if choice is None and self.resume:  # started before the choice was recorded
            bf16 = use_bf16(self.config.precision, self.device)
            choice = {"precision": "bf16" if bf16 else "fp32", "source": "flags"}
        choice = choice or fixed_choice(self.config.precision, self.device)
        if choice is None:
            c = self.config
            params = getattr(self, "model_params", {})  # set by each trainer before this
            key = {
                "stage": stage,
                "model": c.model,
                "params": json.dumps(params, sort_keys=True, default=str),
                "input_size": c.input_size,
                "channels": c.channels,
                "batch_size": c.batch_size,
                "device": self.device.type,
            }
            choice = measured_choice(key, candidates, timed=timed, log=self.progress.message)
        if choice["source"] in ("measured", "cached"):
            self.progress.message(describe(stage, choice))
        self.precision_choices[stage] = choice
        self._write_config()
        return choice["precision"] == "bf16"

    def settle_features_precision(self, frozen: torch.nn.Module, data, what: str) -> bool:
        """Whether the frozen part's features are computed under bf16 autocast (by PyTorch)
        rather than in fp32 (by ONNX Runtime), timed on a batch of training images; the
        winning extractor is kept in ``self._extractors``."""
        batch = data.images[data.train_index[: self.config.batch_size]]
        self._extractors: dict[str, FrozenFeatures] = {}

        def trial() -> dict[str, Step]:
            self._extractors, steps = extractor_trial(frozen, batch, device=self.device)
            return steps

        timed = f"the frozen {what} of a batch of training images"
        return self.settle_precision(FEATURES, timed, trial)

    def _write_config(self) -> None:
        record = self.precision_choices or None
        with naming_the_file(self.out / CONFIG_FILE):
            self.config.to_yaml(self.out / CONFIG_FILE, precision_choice=record)

    def _recorded_choices(self) -> dict[str, dict]:
        """The precisions a resumed run started with, as its config.yaml records them."""
        path = self.out / CONFIG_FILE
        if not path.is_file():
            return {}
        with naming_the_file(path):
            return read_precision_choice(path)

    def fit_settings(self, data: PreparedData, train_counts: np.ndarray) -> FitSettings:
        """The fit loop's settings from the configuration and the training split."""
        c = self.config
        weights = loss_weights(np.maximum(train_counts, 1), c.class_weights)
        return FitSettings(
            batch_size=c.batch_size,
            seed=c.seed,
            epochs=c.epochs,
            max_epochs=c.max_epochs,
            schedule=c.schedule,
            alrs_window_epochs=c.alrs_window_epochs or default_window_epochs(len(data.train_index)),
            alrs_drops=c.alrs_drops,
            warmup_epochs=c.warmup_epochs,
            class_weights=torch.tensor(weights, dtype=torch.float32),
            label_smoothing=c.label_smoothing,
            mixup=c.mixup,
            cutmix=c.cutmix,
            ema_decay=c.ema or None,
            patience=c.patience,
        )

    def optimizer(self, parameters) -> torch.optim.Optimizer:
        """Adam as in the paper, or AdamW with decoupled weight decay; fused (one kernel
        over all the weights) on a CPU or a CUDA GPU, where the update of the default
        top's 4.5 million weights took a quarter of the time of the per-tensor loop."""
        c = self.config
        fused = {"fused": True} if self.device.type in ("cpu", "cuda") else {}
        if c.optimizer == "adamw":
            return torch.optim.AdamW(
                parameters, lr=c.learning_rate, weight_decay=c.weight_decay, **fused
            )
        return torch.optim.Adam(parameters, lr=c.learning_rate, **fused)

    def train_epochs(
        self, batches: Batches, optimizer, data: PreparedData, train_counts, *, kept: str = ""
    ) -> dict:
        """The one fit loop with this run's settings; on Ctrl-C, say what is kept (``kept``
        adds what else is)."""
        try:
            return fit(
                batches,
                optimizer,
                self.fit_settings(data, train_counts),
                out=self.out,
                progress=self.progress,
                resume=self.resume,
            )
        except KeyboardInterrupt:
            self.progress.message(
                f"Interrupted; the checkpoint of the last finished epoch is kept in {self.out} "
                f"(--resume continues from it){kept}",
                warning=True,
            )
            raise

    def validate(self, network, val_x: np.ndarray, val_y: np.ndarray) -> tuple[float, float]:
        """(unweighted cross-entropy, accuracy) on the validation split, in eval mode."""
        if not len(val_y):
            return float("nan"), float("nan")
        logits = predict_logits(network, val_x, device=self.device, bf16=self.bf16)
        target = torch.from_numpy(val_y)
        accuracy = float((logits.argmax(1) == target).float().mean())
        return float(F.cross_entropy(logits, target)), accuracy
