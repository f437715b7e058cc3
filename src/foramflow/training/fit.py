"""The one training loop (method §5): every network trains here, given a model and its batches.

The Base-Cyclic and ResNet networks plug in with image batches (augmented on the way in),
the transfer tail with cached feature vectors. The loop owns what they share:

- one shuffled pass per epoch in batches of ``batch_size``; the ragged last batch is
  dropped (batch norm needs more than one image, and a tiny batch makes a noisy step),
  so every model sees ``max(1, n // batch_size)`` batches of equal size;
- the schedule: ALRS (the paper's), which sees every batch loss and may halve the learning
  rate or stop training mid-epoch; a fixed number of epochs at one rate; or a linear
  warm-up then cosine decay over a fixed number of epochs;
- the loss: cross-entropy with class weights, label smoothing, and mixup or cutmix pairs;
- optionally an exponential moving average (EMA) of the weights, which is what is
  validated and kept;
- after each epoch: validation, a row of ``log.csv``, ``checkpoint_best.pt`` when the
  validation accuracy (then loss) is the best so far, and ``checkpoint_last.pt`` with
  everything needed to resume after an interruption; early stopping after ``patience``
  epochs without a better validation accuracy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from foramflow.data.augment import mix_batch
from foramflow.io.files import naming_the_file
from foramflow.progress import Progress, Quiet
from foramflow.training.checkpoint import (
    CheckpointError,
    check_finite,
    check_weights,
    first_line,
    read_checkpoint,
    save_checkpoint,
)
from foramflow.training.run_folder import BEST_CHECKPOINT, LAST_CHECKPOINT, LOG_FILE
from foramflow.training.schedule import ALRS, Decision, WarmupCosine

LOG_COLUMNS = [
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "learning_rate",
    "seconds",
    "train_images_per_s",
    "alrs_p_decreasing",
    "alrs_drops",
]


def _identity(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return x


@dataclass
class Batches:
    """A model and its batches, as the fit loop sees them.

    ``module`` is what is trained and checkpointed; ``forward`` runs it on a prepared
    batch (a compiled wrapper, say; by default the module itself); ``prepare`` turns a
    slice of ``train_x`` into the batch the network sees (augmentation, device, layout);
    ``validate(module)`` returns (unweighted cross-entropy, accuracy) of ``module`` (the
    trained one, or its moving average) on the validation split.
    """

    module: nn.Module
    train_x: torch.Tensor
    train_y: torch.Tensor
    validate: Callable[[nn.Module], tuple[float, float]]
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None
    prepare: Callable[[torch.Tensor, torch.Generator], torch.Tensor] = _identity
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    bf16: bool = False


@dataclass
class FitSettings:
    """How long, in what steps and with which loss to train.

    ``schedule``: "alrs" stops by itself (or after ``epochs`` at one rate when given);
    "cosine" warms up over ``warmup_epochs`` then decays over ``epochs``.
    """

    batch_size: int
    seed: int
    epochs: int | None = None
    max_epochs: int = 200
    schedule: str = "alrs"
    alrs_window_epochs: int = 10
    alrs_drops: int = 4
    warmup_epochs: float = 0.0
    class_weights: torch.Tensor | None = None
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    ema_decay: float | None = None
    patience: int | None = None

    def __post_init__(self):
        if self.schedule not in ("alrs", "cosine"):
            raise ValueError(f"unknown schedule {self.schedule!r}")
        if self.schedule == "cosine" and not self.epochs:
            raise ValueError("a cosine schedule needs a number of epochs")

    def batches_per_epoch(self, n: int) -> int:
        return max(1, n // min(self.batch_size, n))

    def make_schedule(self, n: int, optimizer) -> ALRS | WarmupCosine | None:
        per_epoch = self.batches_per_epoch(n)
        if self.schedule == "cosine":
            warmup = round(self.warmup_epochs * per_epoch)
            return WarmupCosine(optimizer, total=self.epochs * per_epoch, warmup=warmup)
        if self.epochs:
            return None
        window = max(3, self.alrs_window_epochs * per_epoch)
        return ALRS(window=window, max_drops=self.alrs_drops)


def new_state() -> dict:
    return {"epoch": 0, "best_accuracy": -1.0, "best_loss": float("inf"), "seconds": 0.0}


def fit(
    batches: Batches,
    optimizer: torch.optim.Optimizer,
    settings: FitSettings,
    *,
    out: Path,
    progress: Progress | None = None,
    resume: bool = False,
    what: str = "Epoch",
    log_epochs: bool = True,
) -> dict:
    """Train until the schedule stops or the epoch limit is reached; return the run state.

    The state holds ``epoch``, ``best_epoch``, ``best_accuracy``, ``best_loss``,
    ``seconds`` (time in training epochs) and ``stopped``. The best weights are in
    ``out/checkpoint_best.pt``; with ``resume`` the loop continues from
    ``out/checkpoint_last.pt``.
    """
    progress = progress or Quiet()
    out = Path(out)
    schedule = settings.make_schedule(len(batches.train_y), optimizer)
    generator = torch.Generator().manual_seed(settings.seed)
    ema = _moving_average(batches.module, settings.ema_decay)
    kept = ema.module if ema is not None else batches.module  # validated and checkpointed
    state = new_state()
    if resume:
        state = _load_last(out, batches.module, optimizer, schedule, generator, ema)
        progress.message(f"Resuming {out} after epoch {state['epoch']}")
    last_epoch = settings.epochs or settings.max_epochs
    weights = settings.class_weights
    if weights is not None:
        weights = weights.to(batches.device)
    while not state.get("stopped", False) and state["epoch"] < last_epoch:
        epoch = state["epoch"] + 1
        limit = f"{'≤' if isinstance(schedule, ALRS) else ''}{last_epoch}"
        start = time.perf_counter()
        loss_sum, correct, seen, stopped = _train_epoch(
            batches, optimizer, schedule, generator, weights, settings, progress,
            f"{what} {epoch}/{limit}", ema,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        val_loss, val_accuracy = batches.validate(kept)
        state.update(epoch=epoch, seconds=state["seconds"] + seconds, stopped=stopped)
        row = {
            "epoch": epoch,
            "train_loss": loss_sum / max(seen, 1),
            "train_accuracy": correct / max(seen, 1),
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "learning_rate": _rate(optimizer),
            "seconds": seconds,
            "train_images_per_s": seen / seconds,
            "alrs_p_decreasing": getattr(schedule, "last_probability", float("nan")),
            "alrs_drops": getattr(schedule, "drops", 0),
        }
        _append_log(out / LOG_FILE, row)
        if (val_accuracy, -val_loss) > (state["best_accuracy"], -state["best_loss"]):
            state.update(best_accuracy=val_accuracy, best_loss=val_loss, best_epoch=epoch)
            _save(kept.state_dict(), out / BEST_CHECKPOINT)
        if settings.patience and epoch - state.get("best_epoch", epoch) >= settings.patience:
            state["stopped"] = True  # no better validation accuracy for `patience` epochs
        _save_last(out, batches.module, optimizer, schedule, generator, state, ema)
        if log_epochs:
            progress.message(
                f"{what.lower()} {epoch}: loss {row['train_loss']:.3f}, validation accuracy "
                f"{val_accuracy:.3f}, {row['train_images_per_s']:.0f} images/s"
            )
    return state


def _train_epoch(
    batches: Batches,
    optimizer,
    schedule: ALRS | None,
    generator: torch.Generator,
    weights: torch.Tensor | None,
    settings: FitSettings,
    progress: Progress,
    description: str,
    ema: AveragedModel | None = None,
) -> tuple[float, int, int, bool]:
    """One shuffled pass over the training set; returns (loss sum, correct, seen, stop)."""
    n = len(batches.train_y)
    batch_size = min(settings.batch_size, n)
    n_batches = settings.batches_per_epoch(n)
    forward = batches.forward or batches.module
    lr = _rate(optimizer)
    task = progress.task(description, n_batches, loss="-", acc="-", lr=f"{lr:.2g}")
    batches.module.train()
    order = torch.randperm(n, generator=generator)
    loss_sum, correct, seen, stop = 0.0, 0, 0, False
    try:
        for b in range(n_batches):
            index = order[b * batch_size : (b + 1) * batch_size]
            x = batches.prepare(batches.train_x[index], generator)
            y = batches.train_y[index].to(batches.device)
            x, y, partner, lam = mix_batch(
                x, y, generator=generator, mixup=settings.mixup, cutmix=settings.cutmix
            )
            with torch.autocast(batches.device.type, dtype=torch.bfloat16, enabled=batches.bf16):
                logits = forward(x)
            loss = _loss(logits.float(), y, weights, settings.label_smoothing)
            if lam < 1.0:
                partner_loss = _loss(logits.float(), partner, weights, settings.label_smoothing)
                loss = lam * loss + (1.0 - lam) * partner_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if ema is not None:
                ema.update_parameters(batches.module)
            loss_value = loss.item()
            loss_sum += loss_value * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            task.advance(1, loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
            decision = schedule.step(loss_value) if schedule else Decision.CONTINUE
            if decision is Decision.STOP:
                stop = True
                break
            if decision is Decision.DROP:
                for group in optimizer.param_groups:
                    group["lr"] *= schedule.factor
                task.update(lr=f"{_rate(optimizer):.2g}")
    finally:
        task.done()
    return loss_sum, correct, seen, stop


def _rate(optimizer) -> float:
    """The rate --learning-rate sets: backbone parameter groups run at fractions of it."""
    return max(group["lr"] for group in optimizer.param_groups)


def _loss(logits, target, weights, smoothing: float) -> torch.Tensor:
    return F.cross_entropy(logits, target, weight=weights, label_smoothing=smoothing)


def _moving_average(module: nn.Module, decay: float | None) -> AveragedModel | None:
    """An EMA copy of ``module`` (buffers such as batch-norm statistics averaged too).

    The decay warms up as (1 + n) / (10 + n) after n updates, up to ``decay``: a short run
    (a small set, few batches) is not averaged back towards its starting weights.
    """
    if not decay:
        return None

    def average(averaged, current, n_averaged):
        rate = min(decay, (1.0 + float(n_averaged)) / (10.0 + float(n_averaged)))
        for mean, now in zip(averaged, current):
            if mean.is_floating_point():
                mean.lerp_(now, 1.0 - rate)
            else:  # counters such as batch norm's batches seen
                mean.copy_(now)

    return AveragedModel(module, multi_avg_fn=average, use_buffers=True)


def _append_log(path: Path, row: dict) -> None:
    frame = pd.DataFrame([row], columns=LOG_COLUMNS)
    with naming_the_file(path):
        frame.to_csv(path, mode="a", header=not path.exists(), index=False)


def _save(obj, path: Path) -> None:
    save_checkpoint(obj, path)


def _save_last(out: Path, module, optimizer, schedule, generator, state, ema=None) -> None:
    _save(
        {
            "network": module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict() if schedule else None,
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),  # dropout's: a resumed run ends as one run
            "ema": ema.state_dict() if ema is not None else None,
            "state": state,
        },
        out / LAST_CHECKPOINT,
    )


def _load_last(out: Path, module, optimizer, schedule, generator, ema=None) -> dict:
    """Restore the run from ``checkpoint_last.pt``, read without running code and checked
    (see :mod:`foramflow.training.checkpoint`) before any of it is used."""
    path = out / LAST_CHECKPOINT
    try:
        checkpoint = read_checkpoint(path)
        state = _check_last(checkpoint, path, module, optimizer, generator, ema)
        module.load_state_dict(checkpoint["network"])
        if ema is not None and checkpoint.get("ema"):
            ema.load_state_dict(checkpoint["ema"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if schedule and checkpoint.get("schedule"):
            schedule.load_state_dict(checkpoint["schedule"])
        generator.set_state(checkpoint["generator"])
        if checkpoint.get("torch_rng") is not None:
            torch.set_rng_state(checkpoint["torch_rng"])
    except CheckpointError as err:
        raise CheckpointError(f"{err}; cannot resume: {_START_AGAIN}") from None
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
        raise CheckpointError(
            f"{path}: does not hold this run's state ({type(err).__name__}: {first_line(err)}); "
            f"cannot resume: {_START_AGAIN}"
        ) from None
    log = out / LOG_FILE
    if log.exists():  # drop rows of an epoch that finished after the last checkpoint
        try:
            frame = pd.read_csv(log)
            kept = frame[pd.to_numeric(frame["epoch"]) <= state["epoch"]]
        except (ValueError, KeyError) as err:
            raise CheckpointError(
                f"{log}: not this run's log ({type(err).__name__}: {first_line(err)}); "
                f"cannot resume: {_START_AGAIN}"
            ) from None
        with naming_the_file(log):
            kept.to_csv(log, index=False)
    return state


_START_AGAIN = "train again with another --out folder"


def _check_last(checkpoint: dict, path: Path, module, optimizer, generator, ema) -> dict:
    """The run state of a last checkpoint whose every part fits this run; else refused."""
    missing = [k for k in ("network", "optimizer", "generator", "state") if k not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: not a last checkpoint (no {', '.join(missing)})")
    check_weights(checkpoint["network"], module, path, "network weights")
    if ema is not None and checkpoint.get("ema") is not None:
        check_weights(checkpoint["ema"], ema, path, "averaged weights")
    check_finite(checkpoint["optimizer"], path, "optimizer state")
    _check_optimizer(checkpoint["optimizer"], optimizer, path)
    generators = {"generator": generator.get_state()}
    if checkpoint.get("torch_rng") is not None:
        generators["torch_rng"] = torch.get_rng_state()
    for key, reference in generators.items():
        value = checkpoint[key]
        if not (
            isinstance(value, torch.Tensor)
            and value.dtype == reference.dtype
            and value.shape == reference.shape
        ):
            raise CheckpointError(f"{path}: its {key} is not a random generator's state")
    state = checkpoint["state"]
    numbers = {"epoch": int, "best_accuracy": float, "best_loss": float, "seconds": float}
    if not isinstance(state, dict) or not all(
        isinstance(state.get(k), t) and not isinstance(state.get(k), bool)
        for k, t in numbers.items()
    ):
        raise CheckpointError(f"{path}: its run state is not that of a training run")
    if state["epoch"] < 0:
        raise CheckpointError(f"{path}: its run state has epoch {state['epoch']}")
    return state


def _check_optimizer(saved, optimizer, path: Path) -> None:
    """The saved optimizer's moments must have the shapes of the parameters they follow."""
    if not isinstance(saved, dict) or not isinstance(saved.get("param_groups"), list):
        raise CheckpointError(f"{path}: its optimizer state is not an optimizer's")
    ours = [p for group in optimizer.param_groups for p in group["params"]]
    ids = [i for group in saved["param_groups"] for i in group.get("params", [])]
    if len(ids) != len(ours):
        raise CheckpointError(
            f"{path}: its optimizer follows {len(ids)} parameters, this network has {len(ours)}"
        )
    for saved_id, parameter in zip(ids, ours):
        moments = saved.get("state", {}).get(saved_id, {})
        for name, value in moments.items():
            if isinstance(value, torch.Tensor) and value.dim() and value.shape != parameter.shape:
                raise CheckpointError(
                    f"{path}: its optimizer's {name} has shape {tuple(value.shape)}, "
                    f"its parameter {tuple(parameter.shape)}"
                )
