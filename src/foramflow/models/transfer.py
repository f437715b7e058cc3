"""The transfer-learning network (method §4): a frozen pretrained head and a small tail.

* Head: a [0, 1] image (B, C, S, S), grey or colour → 3 channels → the backbone's
  normalisation → optional cyclic slice → backbone → global average pooling of its last
  layer (and, with ``stages``, of its last stages before it, side by side) → cyclic
  pool (max) → one feature vector (B, F) per image, invariant to 90° rotations (and,
  with ``mirror``, to reflections too: the eight views of the dihedral group pooled).
* Tail (as Zhong et al. 2018 and the paper): dropout 0.05 → dense 512 ReLU → dropout
  0.15 → dense 512 ReLU → dense → logits (softmax outside). The paper calls 0.05 and
  0.15 "keep probabilities"; its Keras code passes them as drop rates, as here.

The head never trains: its vectors are computed once and cached
(:mod:`foramflow.training.feature_cache`), the tail trains on them, and the joined network is
what the bundle exports.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from foramflow.models.backbones import get_backbone
from foramflow.models.base_cyclic import init_he
from foramflow.models.cyclic import cyclic_pool, cyclic_slice, pool_views

TAIL_DROPOUT = (0.05, 0.15)


class TransferHead(nn.Module):
    """Frozen backbone with input transform, optional cyclic slice/pool; (B, C, S, S) → (B, F)."""

    def __init__(
        self,
        backbone: str,
        *,
        input_size: int,
        cyclic: bool = True,
        pool: str = "max",
        stages: bool = False,
        mirror: bool = False,
        weights: str | Path | None = None,
    ):
        super().__init__()
        info = get_backbone(backbone)
        self.backbone_name, self.cyclic, self.pool, self.stages = backbone, cyclic, pool, stages
        self.mirror = mirror
        self.features = info.stage_features if stages else info.features
        self.register_buffer("mean", torch.tensor(info.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(info.std).view(1, 3, 1, 1))
        self.backbone = info.build(input_size=input_size, weights=weights)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> TransferHead:
        """Always in eval mode: batch-norm statistics stay those of ImageNet."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.mean) / self.std
        if self.mirror:
            x = torch.cat([x, x.flip(-1)])
        if self.cyclic:
            x = cyclic_slice(x)
        if self.stages:
            x = torch.cat([m.mean(dim=(2, 3)) for m in self.backbone.stage_maps(x)], dim=1)
        else:
            x = self.backbone(x).mean(dim=(2, 3))
        if self.cyclic:
            x = cyclic_pool(x, self.pool)
        return pool_views(x, 2, self.pool) if self.mirror else x

    def extra_repr(self) -> str:
        return (
            f"backbone={self.backbone_name!r}, cyclic={self.cyclic}, pool={self.pool!r}, "
            f"stages={self.stages}, mirror={self.mirror}"
        )


class TransferTail(nn.Module):
    """The trainable part: feature vector (B, F) → logits (B, K)."""

    def __init__(
        self,
        features: int,
        n_classes: int,
        *,
        dense: int = 512,
        dropout: Sequence[float] = TAIL_DROPOUT,
    ):
        super().__init__()
        first, second = dropout
        self.hidden = nn.Sequential(
            nn.Dropout(first),
            nn.Linear(features, dense),
            nn.ReLU(inplace=True),
            nn.Dropout(second),
            nn.Linear(dense, dense),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(dense, n_classes)
        init_he(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.hidden(x))


class TransferNetwork(nn.Module):
    """Head and tail joined: (B, C, S, S) in [0, 1] → logits, the form a bundle exports."""

    def __init__(self, head: TransferHead, tail: TransferTail):
        super().__init__()
        self.head, self.tail = head, tail

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.head(x))


def pretrained_head(
    backbone: str,
    input_size: int,
    *,
    cyclic: bool,
    pool: str,
    weights: str | Path | None,
    stages: bool = False,
    mirror: bool = False,
) -> TransferHead:
    """The head with ``weights``, else the backbone's installed ImageNet weights if any."""
    weights = weights or get_backbone(backbone).default_weights()
    return TransferHead(
        backbone,
        input_size=input_size,
        cyclic=cyclic,
        pool=pool,
        stages=stages,
        mirror=mirror,
        weights=weights,
    )


def transfer_builder(backbone: str):
    """A registry ``build`` function for ``backbone`` with a transfer tail.

    ``weights=None`` loads the backbone's installed ImageNet weights where it has them
    (EfficientNet-Lite0) and leaves the others randomly initialised, ready for a
    checkpoint of the whole network.
    """

    def build(
        *,
        n_classes: int,
        input_size: int,
        channels: int,
        cyclic: bool = True,
        pool: str = "max",
        stages: bool = False,
        mirror: bool = False,
        dense: int = 512,
        dropout: Sequence[float] = TAIL_DROPOUT,
        weights: str | Path | None = None,
    ) -> TransferNetwork:
        del channels  # the head takes grey and colour alike
        head = pretrained_head(
            backbone,
            input_size,
            cyclic=cyclic,
            pool=pool,
            stages=stages,
            mirror=mirror,
            weights=weights,
        )
        tail = TransferTail(head.features, n_classes, dense=dense, dropout=dropout)
        return TransferNetwork(head, tail)

    build.__name__ = f"{backbone}_transfer"
    build.backbone = backbone
    return build
