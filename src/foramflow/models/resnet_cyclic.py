"""ResNet-Cyclic: Base-Cyclic with residual blocks in place of plain conv pairs."""

from __future__ import annotations

import torch
from torch import nn

from foramflow.models.base_cyclic import block_count, init_he
from foramflow.models.cyclic import N_PATHS, CyclicPool, CyclicRoll, CyclicSlice
from foramflow.models.resnet import ResidualBlock


class ResNetCyclic(nn.Module):
    def __init__(
        self,
        *,
        n_classes: int,
        input_size: int = 128,
        channels: int = 1,
        filters: int = 8,
        dense: int = 512,
        dropout: float = 0.5,
        pool: str = "max",
    ):
        super().__init__()
        blocks = block_count(input_size)
        if input_size % 2**blocks:
            raise ValueError(f"input size {input_size} must be divisible by 2**{blocks}")
        layers: list[nn.Module] = [CyclicSlice()]
        in_channels = channels
        for i in range(blocks):
            out_channels = filters * 2**i
            layers += [ResidualBlock(in_channels, out_channels), nn.MaxPool2d(2), CyclicRoll()]
            in_channels = out_channels * N_PATHS
        self.features = nn.Sequential(*layers)
        side = input_size // 2**blocks
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(in_channels * side * side, dense),
            nn.ReLU(inplace=True),
            CyclicPool(pool),
        )
        self.classifier = nn.Linear(dense, n_classes)
        init_he(self)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))
