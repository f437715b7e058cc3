"""ResNet-Cyclic: Base-Cyclic with residual blocks in place of plain conv pairs."""

from __future__ import annotations

from torch import nn

from foramflow.models.base_cyclic import BaseCyclic
from foramflow.models.resnet import ResidualBlock


class ResNetCyclic(BaseCyclic):
    @staticmethod
    def conv_block(in_channels: int, out_channels: int) -> list[nn.Module]:
        """One residual block (two 3×3 convs with a shortcut) per stage."""
        return [ResidualBlock(in_channels, out_channels)]
