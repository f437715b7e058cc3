"""Train a network on a labelled image set (METHOD §5) and write a complete run folder.

Run folder::

    config.yaml            the resolved configuration
    log.csv                one row per epoch, appended as training goes
    checkpoint_best.pt     weights with the best validation accuracy
    checkpoint_last.pt     everything needed to resume after an interruption
    skipped_images.csv     images that could not be read or listed (the run carried on)
    split.csv              every image with its class and its part (train / validation)
    bundle/                the exported model bundle
    evaluation/            metrics tables, figures and report.html
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from foramflow.data.arrays import preprocess_all
from foramflow.data.augment import augment_batch
from foramflow.data.dataset import ImageSet, image_set_hash, load_image_set
from foramflow.data.split import loss_weights, stratified_split
from foramflow.imaging.preprocess import PreprocessSpec
from foramflow.io.images import printable_path
from foramflow.models.registry import create_model, get_entry
from foramflow.train.config import TrainConfig
from foramflow.train.device import CompiledOrEager, resolve_device, use_bf16
from foramflow.train.finish import export_and_evaluate
from foramflow.train.schedule import ALRS, Decision, default_window_epochs

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


class RunFolderExists(FileExistsError):
    pass


@dataclass
class PreparedData:
    image_set: ImageSet
    images: np.ndarray  # (N, C, S, S) float16, readable images only
    labels: np.ndarray
    paths: list[Path]
    train_index: np.ndarray
    val_index: np.ndarray
    skipped: dict[str, str]  # printable path: why the image is not used
    dataset_hash: str  # of the images used


def prepare_data(config: TrainConfig, console: Console) -> PreparedData:
    """Load, preprocess and split the image set; images that cannot be listed or read are
    reported and skipped, and the set's hash is that of the images used."""
    image_set = load_image_set(config.data, min_per_class=config.min_per_class)
    if image_set.dropped:
        listed = ", ".join(f"{k} ({v})" for k, v in image_set.dropped.items())
        console.print(
            f"Dropped {len(image_set.dropped)} class(es) under "
            f"{config.min_per_class} images: {listed}"
        )
    spec = PreprocessSpec(size=config.input_size, channels=config.channels)
    with _progress(console) as progress:
        task = progress.add_task("Preprocessing images", total=len(image_set))
        images, ok, unreadable = preprocess_all(
            image_set.paths,
            spec,
            workers=config.workers or None,
            on_progress=lambda n: progress.advance(task, n),
            max_pixels=config.max_pixels,
        )
    skipped = {
        printable_path(p): reason for p, reason in {**image_set.skipped, **unreadable}.items()
    }
    for path, reason in skipped.items():
        console.print(f"[yellow]skipped[/] {escape(path)}: {escape(reason)}", soft_wrap=True)
    used = image_set.subset(ok)
    train_index, val_index = stratified_split(
        used.labels, val_fraction=config.val_fraction, seed=config.seed
    )
    return PreparedData(
        image_set=image_set,
        images=images,
        labels=used.labels,
        paths=used.paths,
        train_index=train_index,
        val_index=val_index,
        skipped=skipped,
        dataset_hash=image_set_hash(used),
    )


def _progress(console: Console, *fields: str) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *[TextColumn(f"{name} {{task.fields[{name}]}}") for name in fields],
        console=console,
    )


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
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
        x = _to_device(torch.from_numpy(images[start : start + batch_size]), device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out.append(network(x).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


class Trainer:
    """One training run. ``run()`` trains (or resumes), then exports and evaluates."""

    def __init__(
        self, config: TrainConfig, *, console: Console | None = None, resume: bool = False
    ):
        self.config = config
        self.console = console or Console(stderr=True)
        self.out = Path(config.out)
        self.resume = resume
        if not resume and self.out.exists() and any(self.out.iterdir()):
            raise RunFolderExists(
                f"{self.out}: run folder already exists and is not empty "
                "(choose another --out, or --resume to continue it)"
            )
        if resume and not (self.out / "checkpoint_last.pt").is_file():
            raise FileNotFoundError(f"{self.out}: nothing to resume (no checkpoint_last.pt)")
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(config.device)
        self.bf16 = use_bf16(config.precision, self.device)

    # -- set-up ------------------------------------------------------------------
    def _build(self, n_classes: int) -> torch.nn.Module:
        c = self.config
        params = {"filters": c.filters, "pool": c.pool, "dropout": c.dropout, "dense": c.dense}
        entry = get_entry(c.model)
        if entry.kind != "full":
            raise ValueError(f"model {c.model!r} is trained on cached features, not with this loop")
        accepted = {k: v for k, v in params.items() if k in entry.defaults}
        network = create_model(
            c.model, n_classes=n_classes, input_size=c.input_size, channels=c.channels, **accepted
        )
        self.model_params = accepted
        return network.to(self.device).to(memory_format=torch.channels_last)

    def _start(self) -> PreparedData:
        """Seed, write config.yaml, and load, preprocess and split the image set."""
        torch.manual_seed(self.config.seed)
        if self.device.type == "cpu":
            torch.set_num_threads(os.cpu_count() or 1)
        self.config.to_yaml(self.out / "config.yaml")
        self.data = prepare_data(self.config, self.console)
        self._write_split(self.data)
        return self.data

    def run(self) -> Path:
        c = self.config
        data = self._start()
        classes = data.image_set.classes
        train_counts = np.bincount(data.labels[data.train_index], minlength=len(classes))
        weights = torch.tensor(
            loss_weights(np.maximum(train_counts, 1), c.class_weights), dtype=torch.float32
        )
        network = self._build(len(classes))
        optimizer = torch.optim.Adam(network.parameters(), lr=c.learning_rate)
        batches_per_epoch = max(1, len(data.train_index) // c.batch_size)
        window_epochs = c.alrs_window_epochs or default_window_epochs(len(data.train_index))
        schedule = (
            None
            if c.epochs
            else ALRS(window=max(3, window_epochs * batches_per_epoch), max_drops=c.alrs_drops)
        )
        state = {"epoch": 0, "best_accuracy": -1.0, "best_loss": float("inf"), "seconds": 0.0}
        generator = torch.Generator().manual_seed(c.seed)
        if self.resume:
            state = self._load_last(network, optimizer, schedule, generator)
            self.console.print(f"Resuming {self.out} after epoch {state['epoch']}")
        self._fit(network, optimizer, schedule, generator, weights, state, data)
        return self._finish(network, data, train_counts, state)

    def _write_split(self, data: PreparedData) -> None:
        part = np.full(len(data.labels), "train", dtype=object)
        part[data.val_index] = "validation"
        pd.DataFrame(
            {
                "path": [str(p) for p in data.paths],
                "class": [data.image_set.classes[k] for k in data.labels],
                "part": part,
            }
        ).to_csv(self.out / "split.csv", index=False)
        pd.DataFrame(sorted(data.skipped.items()), columns=["path", "reason"]).to_csv(
            self.out / "skipped_images.csv", index=False
        )

    # -- training ----------------------------------------------------------------
    def _fit(self, network, optimizer, schedule, generator, weights, state, data) -> None:
        """Train epoch after epoch until the schedule stops or the epoch limit is reached."""
        c = self.config
        train_x = torch.from_numpy(data.images[data.train_index])
        train_y = torch.from_numpy(data.labels[data.train_index])
        val_x, val_y = data.images[data.val_index], data.labels[data.val_index]
        weights = weights.to(self.device)
        last_epoch = c.epochs or c.max_epochs
        train_step = network
        compile_pays = self.device.type == "cuda" and len(train_y) >= 5000
        if c.compile == "on" or (c.compile == "auto" and compile_pays):
            train_step = CompiledOrEager(network, lambda m: self.console.print(f"[yellow]{m}"))
            self.console.print("Compiling the network (once, about a minute) …")
        stop = state.get("stopped", False)
        with _progress(self.console, "loss", "acc", "lr") as progress:
            while not stop and state["epoch"] < last_epoch:
                epoch = state["epoch"] + 1
                network.train()
                start = time.perf_counter()
                try:
                    epoch_stats = self._train_epoch(
                        train_step,
                        optimizer,
                        schedule,
                        generator,
                        weights,
                        train_x,
                        train_y,
                        progress,
                        f"Epoch {epoch}/{'≤' if schedule else ''}{last_epoch}",
                    )
                except KeyboardInterrupt:
                    self.console.print(
                        f"[yellow]Interrupted in epoch {epoch}.[/] Checkpoint of epoch "
                        f"{state['epoch']} kept; continue with: foramflow train --config "
                        f"{self.out / 'config.yaml'} --resume"
                    )
                    raise
                loss_sum, correct, seen, stop = epoch_stats
                seconds = time.perf_counter() - start
                val_loss, val_accuracy = self._validate(network, val_x, val_y)
                state.update(epoch=epoch, seconds=state["seconds"] + seconds, stopped=stop)
                row = {
                    "epoch": epoch,
                    "train_loss": loss_sum / max(seen, 1),
                    "train_accuracy": correct / max(seen, 1),
                    "val_loss": val_loss,
                    "val_accuracy": val_accuracy,
                    "learning_rate": optimizer.param_groups[0]["lr"],
                    "seconds": seconds,
                    "train_images_per_s": seen / seconds,
                    "alrs_p_decreasing": schedule.last_probability if schedule else float("nan"),
                    "alrs_drops": schedule.drops if schedule else 0,
                }
                self._append_log(row)
                if (val_accuracy, -val_loss) > (state["best_accuracy"], -state["best_loss"]):
                    state.update(best_accuracy=val_accuracy, best_loss=val_loss, best_epoch=epoch)
                    torch.save(network.state_dict(), self.out / "checkpoint_best.pt")
                self._save_last(network, optimizer, schedule, generator, state)
                self.console.print(
                    f"epoch {epoch}: loss {row['train_loss']:.3f}, validation accuracy "
                    f"{val_accuracy:.3f}, {row['train_images_per_s']:.0f} images/s"
                )

    def _train_epoch(
        self,
        train_step,
        optimizer,
        schedule,
        generator,
        weights,
        train_x,
        train_y,
        progress,
        description,
    ) -> tuple[float, int, int, bool]:
        """One pass over the shuffled training set; returns (loss sum, correct, seen, stop).

        The ragged last batch is dropped: batch norm needs more than one image, and a tiny
        batch would make a noisy step. ALRS sees every batch loss and may halve the learning
        rate or stop training mid-epoch.
        """
        n = len(train_y)
        batch_size = min(self.config.batch_size, n)
        n_batches = max(1, n // batch_size)
        lr = optimizer.param_groups[0]["lr"]
        task = progress.add_task(description, total=n_batches, loss="-", acc="-", lr=f"{lr:.2g}")
        order = torch.randperm(n, generator=generator)
        loss_sum, correct, seen, stop = 0.0, 0, 0, False
        for b in range(n_batches):
            index = order[b * batch_size : (b + 1) * batch_size]
            x = train_x[index].float()
            if self.config.augment:
                x = augment_batch(x, generator=generator)
            x, y = _to_device(x, self.device), train_y[index].to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                logits = train_step(x)
            loss = F.cross_entropy(logits.float(), y, weight=weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_value = loss.item()
            loss_sum += loss_value * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            progress.update(
                task, advance=1, loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}"
            )
            decision = schedule.step(loss_value) if schedule else Decision.CONTINUE
            if decision is Decision.STOP:
                stop = True
                break
            if decision is Decision.DROP:
                for group in optimizer.param_groups:
                    group["lr"] *= schedule.factor
                progress.update(task, lr=f"{optimizer.param_groups[0]['lr']:.2g}")
        progress.remove_task(task)
        return loss_sum, correct, seen, stop

    def _validate(self, network, val_x: np.ndarray, val_y: np.ndarray) -> tuple[float, float]:
        """(unweighted cross-entropy, accuracy) on the validation split, in eval mode."""
        if not len(val_y):
            return float("nan"), float("nan")
        logits = predict_logits(network, val_x, device=self.device, bf16=self.bf16)
        target = torch.from_numpy(val_y)
        accuracy = float((logits.argmax(1) == target).float().mean())
        return float(F.cross_entropy(logits, target)), accuracy

    def _append_log(self, row: dict) -> None:
        path = self.out / "log.csv"
        frame = pd.DataFrame([row], columns=LOG_COLUMNS)
        frame.to_csv(path, mode="a", header=not path.exists(), index=False)

    def _save_last(self, network, optimizer, schedule, generator, state) -> None:
        tmp = self.out / "checkpoint_last.pt.tmp"
        torch.save(
            {
                "network": network.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict() if schedule else None,
                "generator": generator.get_state(),
                "state": state,
            },
            tmp,
        )
        os.replace(tmp, self.out / "checkpoint_last.pt")

    def _load_last(self, network, optimizer, schedule, generator) -> dict:
        checkpoint = torch.load(self.out / "checkpoint_last.pt", weights_only=False)
        network.load_state_dict(checkpoint["network"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if schedule and checkpoint["schedule"]:
            schedule.load_state_dict(checkpoint["schedule"])
        generator.set_state(checkpoint["generator"])
        log = self.out / "log.csv"
        if log.exists():  # drop rows of an epoch that finished after the last checkpoint
            frame = pd.read_csv(log)
            frame[frame["epoch"] <= checkpoint["state"]["epoch"]].to_csv(log, index=False)
        return checkpoint["state"]

    # -- export and evaluation ---------------------------------------------------
    def _finish(self, network, data: PreparedData, train_counts, state) -> Path:
        network.load_state_dict(torch.load(self.out / "checkpoint_best.pt", weights_only=True))
        return export_and_evaluate(
            network.cpu(),
            data,
            config=self.config,
            out=self.out,
            model_params=self.model_params,
            train_counts=train_counts,
            state=state,
            console=self.console,
        )
