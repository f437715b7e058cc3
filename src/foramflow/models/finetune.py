"""Fine-tuning: a pretrained backbone trained end to end, with the paper's cyclic layers.

The network is the transfer head (grey or colour → 3 channels → the backbone's
normalisation → optional cyclic slice → backbone → global average pooling → cyclic pool)
with a dropout and a linear classifier, but every weight trains: the backbone at a tenth
of the classifier's learning rate (discriminative rates), so that ImageNet's features are
adapted rather than overwritten. Batch-norm statistics stay ImageNet's: the small batches
that fit a CPU's cache would make them noisy.

On a CPU this costs the backbone's forward and backward pass per image and epoch, many
times a cached-features run; it pays off with a GPU, or given hours.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from foramflow.models.transfer import TransferHead, pretrained_head

BACKBONE_RATE = 0.1  # the backbone's learning rate relative to the classifier's

#: Fine-tuning's own recipe: AdamW, warm-up then cosine, label smoothing, EMA of weights.
FINE_TUNE_RECIPE = {
    "optimizer": "adamw",
    "schedule": "cosine",
    "label_smoothing": 0.1,
    "ema": 0.999,
    "epochs": 10,
    "class_weights": "clamped",
    "min_per_class": 10,
}


class FineTuned(nn.Module):
    """(B, C, S, S) in [0, 1] → logits, every weight trainable."""

    def __init__(self, head: TransferHead, n_classes: int, *, dropout: float = 0.2):
        super().__init__()
        self.head = head.requires_grad_(True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head.features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.head(x)))

    def parameter_groups(self, learning_rate: float) -> list[dict]:
        """The backbone at :data:`BACKBONE_RATE` of ``learning_rate``, the classifier at it."""
        return [
            {"params": self.head.parameters(), "lr": learning_rate * BACKBONE_RATE},
            {"params": self.classifier.parameters(), "lr": learning_rate},
        ]


def fine_tune_builder(backbone: str):
    """A registry ``build`` function: ``backbone`` with its ImageNet weights, fine-tuned."""

    def build(
        *,
        n_classes: int,
        input_size: int,
        channels: int,
        cyclic: bool = True,
        pool: str = "max",
        dropout: float = 0.2,
        weights: str | Path | None = None,
    ) -> FineTuned:
        del channels  # the head takes grey and colour alike
        head = pretrained_head(backbone, input_size, cyclic=cyclic, pool=pool, weights=weights)
        return FineTuned(head, n_classes, dropout=dropout)

    build.__name__ = f"{backbone}_fine_tune"
    build.backbone = backbone
    return build
