"""The trainer of each kind of registered model (the registry entry's ``kind``): what the
train step runs, whatever the model."""

from __future__ import annotations

from foramflow.training.full import FullTrainer
from foramflow.training.top import TopTrainer
from foramflow.training.trainer import Trainer
from foramflow.training.transfer import TransferTrainer

TRAINERS: dict[str, type[Trainer]] = {
    "full": FullTrainer,  # every weight, on augmented images; resumable
    "transfer": TransferTrainer,  # a tail on cached head vectors
    "top": TopTrainer,  # the top of a backbone on cached maps of its frozen bottom; resumable
}
