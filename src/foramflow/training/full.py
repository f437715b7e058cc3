"""Full networks (Base-Cyclic, ResNet, fine-tuned backbones) trained end to end on images
augmented on the way in; an interrupted run resumes from its last epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from foramflow.data.augment import AugmentConfig, augment_batch
from foramflow.models.registry import build_full_network
from foramflow.training.checkpoint import load_weights
from foramflow.training.device import CompiledOrEager
from foramflow.training.finish import export_and_evaluate
from foramflow.training.fit import Batches
from foramflow.training.precision import EPOCHS, training_steps
from foramflow.training.prepared import PreparedData
from foramflow.training.run_folder import BEST_CHECKPOINT
from foramflow.training.trainer import Trainer, to_device


class FullTrainer(Trainer):
    """A run that trains every weight of a network on the images themselves."""

    def run(self) -> Path:
        data = self.start()
        classes = data.image_set.classes
        train_counts = np.bincount(data.labels[data.train_index], minlength=len(classes))
        network = self._build(len(classes))
        groups = getattr(network, "parameter_groups", None)  # discriminative learning rates
        rate = self.config.learning_rate
        optimizer = self.optimizer(groups(rate) if groups else network.parameters())
        self.bf16 = self.settle_precision(
            EPOCHS,
            "training steps of the network on a batch of training images",
            lambda: training_steps(network, optimizer, *self._trial_batch(data)),
        )
        state = self.train_epochs(self._batches(network, data), optimizer, data, train_counts)
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

    def _build(self, n_classes: int) -> torch.nn.Module:
        c = self.config
        offered = {
            "filters": c.filters,
            "pool": c.pool,
            "dropout": c.dropout,
            "dense": c.dense,
            "cyclic": c.cyclic,
            "weights": c.weights,
        }
        network, self.model_params = build_full_network(
            c.model,
            n_classes=n_classes,
            input_size=c.input_size,
            channels=c.channels,
            offered=offered,
        )
        return network.to(self.device).to(memory_format=torch.channels_last)

    def _trial_batch(self, data: PreparedData) -> tuple[torch.Tensor, torch.Tensor]:
        """The first batch of training images and their labels, as the network sees them."""
        index = data.train_index[: self.config.batch_size]
        x = to_device(torch.from_numpy(data.images[index]), self.device)
        return x, torch.from_numpy(data.labels[index]).to(self.device)

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
            return to_device(x, device)

        val_x, val_y = data.images[data.val_index], data.labels[data.val_index]
        return Batches(
            module=network,
            train_x=torch.from_numpy(data.images[data.train_index]),
            train_y=torch.from_numpy(data.labels[data.train_index]),
            validate=lambda module: self.validate(module, val_x, val_y),
            forward=forward,
            prepare=prepare,
            device=device,
            bf16=self.bf16,
        )
