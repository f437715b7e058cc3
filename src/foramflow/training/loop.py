"""Train a network on a labelled image set (method §5) and write a complete run folder.

Run folder::

    config.yaml            the resolved configuration
    log.csv                one row per epoch, appended as training goes
    checkpoint_best.pt     weights with the best validation accuracy
    checkpoint_last.pt     everything needed to resume after an interruption
    skipped_images.csv     images that could not be read or listed (the run carried on)
    split.csv              every image with its class and its part (train / validation)
    bundle/                the exported model bundle
    bundle_fast/           networks that average views of an image only: the same weights
                           reading each image once (a quarter of the work, a little less
                           accurate)
    evaluation/            metrics tables, figures and report.html
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from foramflow.bundle.schema import ONE_VIEW_BUNDLE, RUN_BUNDLE
from foramflow.data.arrays import preprocess_all
from foramflow.data.augment import AugmentConfig, augment_batch
from foramflow.data.dataset import ImageSet, image_set_hash, load_image_set
from foramflow.data.split import loss_weights, stratified_split
from foramflow.errors import ForamflowError
from foramflow.imaging.preprocess import PreprocessSpec
from foramflow.io.files import naming_the_file
from foramflow.io.images import printable_path
from foramflow.models.backbones import resolve_weights
from foramflow.models.registry import create_model, get_entry
from foramflow.progress import Progress, Quiet
from foramflow.train.checkpoint import load_weights
from foramflow.train.config import AUTO, TrainConfig
from foramflow.train.device import CompiledOrEager, resolve_device, use_bf16
from foramflow.train.finish import export_and_evaluate
from foramflow.train.fit import BEST_CHECKPOINT, LAST_CHECKPOINT, Batches, FitSettings, fit
from foramflow.train.schedule import default_window_epochs


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
    config: TrainConfig, *, progress: Progress | None = None, resume: bool = False
) -> TrainResult:
    """Train the network ``config`` names on its image set, then export, evaluate and report
    it, in the run folder ``config.out`` (see this module's description of the folder).

    Full networks train end to end (:class:`Trainer`); transfer models train a tail on cached
    backbone features (:class:`foramflow.train.transfer.TransferTrainer`). ``resume``
    continues an interrupted full-network run from its last checkpoint.
    """
    from foramflow.train.auto import resolve_auto
    from foramflow.train.transfer import trainer_class

    progress = progress or Quiet()
    check_run_folder(config.out, resume=resume)
    if not resume:  # a resumed run's config.yaml already names its model
        config = resolve_auto(config, progress)
    trainer = trainer_class(config.model)(config, progress=progress, resume=resume)
    with naming_the_file(config.out):  # a full disk in a writer that does not name its file
        report = trainer.run()
    return TrainResult(
        out=trainer.out,
        bundle=trainer.out / RUN_BUNDLE,
        report=report,
        metrics=json.loads((trainer.out / "metrics.json").read_text()),
        classes=list(trainer.data.image_set.classes),
        skipped=dict(trainer.data.skipped),
    )


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


def prepare_data(config: TrainConfig, progress: Progress) -> PreparedData:
    """Load, preprocess and split the image set; images that cannot be listed or read are
    reported and skipped, and the set's hash is that of the images used."""
    image_set = load_image_set(
        config.data,
        min_per_class=config.min_per_class,
        include_predictions=config.include_predictions,
    )
    if image_set.dropped:
        listed = ", ".join(f"{k} ({v})" for k, v in image_set.dropped.items())
        progress.message(
            f"Dropped {len(image_set.dropped)} class(es) under "
            f"{config.min_per_class} images: {listed}"
        )
    spec = PreprocessSpec(size=config.input_size, channels=config.channels)
    task = progress.task("Preprocessing images", len(image_set))
    try:
        images, ok, unreadable = preprocess_all(
            image_set.paths,
            spec,
            workers=config.workers or None,
            on_progress=task.advance,
            max_pixels=config.max_pixels,
        )
    finally:
        task.done()
    skipped = {
        printable_path(p): reason for p, reason in {**image_set.skipped, **unreadable}.items()
    }
    for path, reason in skipped.items():
        progress.message(f"skipped {path}: {reason}", warning=True)
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
        self, config: TrainConfig, *, progress: Progress | None = None, resume: bool = False
    ):
        self.progress = progress or Quiet()
        if config.model == AUTO:
            raise ValueError("resolve model 'auto' first (foramflow.train.auto.resolve_auto)")
        self.config = config
        self.out = Path(config.out)
        self.resume = resume
        check_run_folder(self.out, resume=resume)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(config.device)
        self.bf16 = use_bf16(config.precision, self.device)

    # -- set-up ------------------------------------------------------------------
    def _build(self, n_classes: int) -> torch.nn.Module:
        c = self.config
        params = {
            "filters": c.filters,
            "pool": c.pool,
            "dropout": c.dropout,
            "dense": c.dense,
            "cyclic": c.cyclic,
            "weights": c.weights,
        }
        entry = get_entry(c.model)
        if entry.kind != "full":
            raise ValueError(f"model {c.model!r} is trained on cached features, not with this loop")
        accepted = {k: v for k, v in params.items() if k in entry.defaults}
        backbone = getattr(entry.build, "backbone", None)
        if backbone:  # a pretrained backbone: its ImageNet weights, never a random start
            accepted["weights"] = str(resolve_weights(backbone, c.weights))
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
        with naming_the_file(self.out / "config.yaml"):
            self.config.to_yaml(self.out / "config.yaml")
        self.data = prepare_data(self.config, self.progress)
        self._write_split(self.data)
        return self.data

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
        """Adam as in the paper, or AdamW with decoupled weight decay."""
        c = self.config
        if c.optimizer == "adamw":
            return torch.optim.AdamW(parameters, lr=c.learning_rate, weight_decay=c.weight_decay)
        return torch.optim.Adam(parameters, lr=c.learning_rate)

    def run(self) -> Path:
        data = self._start()
        classes = data.image_set.classes
        train_counts = np.bincount(data.labels[data.train_index], minlength=len(classes))
        network = self._build(len(classes))
        groups = getattr(network, "parameter_groups", None)  # discriminative learning rates
        rate = self.config.learning_rate
        optimizer = self.optimizer(groups(rate) if groups else network.parameters())
        state = self.train_epochs(self._batches(network, data), optimizer, data, train_counts)
        return self._finish(network, data, train_counts, state)

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

    def _batches(self, network: torch.nn.Module, data: PreparedData) -> Batches:
        """Image batches: augmented on the way in when the configuration says so."""
        c = self.config
        device = self.device
        forward = network
        compile_pays = device.type == "cuda" and len(data.train_index) >= 5000
        if c.compile == "on" or (c.compile == "auto" and compile_pays):
            forward = CompiledOrEager(network, lambda m: self.progress.message(m, warning=True))
            self.progress.message("Compiling the network (once, about a minute) …")

        augmentation = AugmentConfig(flips=c.flips)

        def prepare(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
            x = x.float()
            if c.augment:
                x = augment_batch(x, generator=generator, config=augmentation)
            return _to_device(x, device)

        val_x, val_y = data.images[data.val_index], data.labels[data.val_index]
        return Batches(
            module=network,
            train_x=torch.from_numpy(data.images[data.train_index]),
            train_y=torch.from_numpy(data.labels[data.train_index]),
            validate=lambda module: self._validate(module, val_x, val_y),
            forward=forward,
            prepare=prepare,
            device=device,
            bf16=self.bf16,
        )

    def _write_split(self, data: PreparedData) -> None:
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
        for frame, name in ((split, "split.csv"), (skipped, "skipped_images.csv")):
            with naming_the_file(self.out / name):
                frame.to_csv(self.out / name, index=False)

    def _validate(self, network, val_x: np.ndarray, val_y: np.ndarray) -> tuple[float, float]:
        """(unweighted cross-entropy, accuracy) on the validation split, in eval mode."""
        if not len(val_y):
            return float("nan"), float("nan")
        logits = predict_logits(network, val_x, device=self.device, bf16=self.bf16)
        target = torch.from_numpy(val_y)
        accuracy = float((logits.argmax(1) == target).float().mean())
        return float(F.cross_entropy(logits, target)), accuracy

    # -- export and evaluation ---------------------------------------------------
    def _finish(self, network, data: PreparedData, train_counts, state) -> Path:
        load_weights(network, self.out / BEST_CHECKPOINT)
        return export_and_evaluate(
            network.cpu(),
            data,
            config=self.config,
            out=self.out,
            model_params=self.model_params,
            train_counts=train_counts,
            state=state,
            progress=self.progress,
        )
