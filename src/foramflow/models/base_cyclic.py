"""Base-Cyclic, the paper's own network (method §4).

N = round(log2(width) − 2) blocks of 2 × [3×3 conv → batch norm → ReLU] → 2×2 max pool,
filters doubling per block; a cyclic roll after each block; flatten → dropout 0.5 →
dense 512 ReLU → cyclic pool → dense → logits. Softmax is applied outside (in the loss
during training, in the exported graph for classification).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from foramflow.errors import InvalidInput
from foramflow.models.cyclic import N_PATHS, CyclicPool, CyclicRoll, CyclicSlice


def block_count(input_size: int) -> int:
    """round(log2(w) − 2): 4 blocks at 64 px, 5 at 128 px, 6 at 256 px."""
    return round(math.log2(input_size) - 2)


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class BaseCyclic(nn.Module):
    def __init__(
        self,
        *,
        n_classes: int,
        input_size: int,
        channels: int = 1,
        filters: int = 8,
        dense: int = 512,
        dropout: float = 0.5,
        pool: str = "max",
    ):
        super().__init__()
        blocks = block_count(input_size)
        if input_size % 2**blocks:
            raise InvalidInput(f"input size {input_size} must be divisible by 2**{blocks}")
        layers: list[nn.Module] = [CyclicSlice()]
        in_channels = channels
        for i in range(blocks):
            out_channels = filters * 2**i
            layers += self.conv_block(in_channels, out_channels)
            layers += [nn.MaxPool2d(2), CyclicRoll()]
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

    @staticmethod
    def conv_block(in_channels: int, out_channels: int) -> list[nn.Module]:
        """2 × [3×3 conv → batch norm → ReLU]; subclasses swap in other blocks."""
        return conv_bn_relu(in_channels, out_channels) + conv_bn_relu(out_channels, out_channels)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The rotation-invariant feature vector (B, dense) before the classifier."""
        return self.head(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


def init_he(module: nn.Module) -> None:
    """He (Kaiming) normal initialisation of the ReLU layers, as the paper.

    The final ``classifier`` layer feeds a softmax, not a ReLU: it starts at zero, so every
    class starts equally likely (loss log K). With He weights there the 512 pooled features
    give logits in the tens and first losses far above log K, which slows early training.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    classifier = getattr(module, "classifier", None)
    if isinstance(classifier, nn.Linear):
        nn.init.zeros_(classifier.weight)
