"""Training augmentation on whole batches of tensors (METHOD §5), never per image in Python.

Rotation uniform in 0–360°, zoom ×{0.9, 1, 1.1}, gamma I^{0.5, 1, 2}, gain ×{0.8, 1, 1.2}.
Corners uncovered by the rotation are filled with each image's own background (the median
of its edge pixels), not black: on light-background images black corners would teach the
network something that never occurs when classifying.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    rotation: bool = True
    zooms: tuple[float, ...] = (0.9, 1.0, 1.1)
    gammas: tuple[float, ...] = (0.5, 1.0, 2.0)
    gains: tuple[float, ...] = (0.8, 1.0, 1.2)


def edge_median(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B, C, 1, 1): median of each image's border pixels per channel."""
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., 1:-1, 0], x[..., 1:-1, -1]], dim=-1)
    return border.median(dim=-1).values[..., None, None]


def _choice(values: tuple[float, ...], n: int, generator: torch.Generator, device) -> torch.Tensor:
    table = torch.tensor(values, dtype=torch.float32)
    return table[torch.randint(len(values), (n,), generator=generator)].to(device)


def augment_batch(
    x: torch.Tensor, *, generator: torch.Generator, config: AugmentConfig = AugmentConfig()
) -> torch.Tensor:
    """Randomly rotate, zoom, gamma-correct and scale a batch (B, C, H, W) in [0, 1]."""
    n, device = x.shape[0], x.device
    x = x.float()
    angle = torch.rand(n, generator=generator).to(device) * (2 * math.pi if config.rotation else 0)
    scale = 1.0 / _choice(config.zooms, n, generator, device)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    zeros = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zeros], 1), torch.stack([sin, cos, zeros], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    background = edge_median(x)
    x = F.grid_sample(x - background, grid, mode="bilinear", align_corners=False) + background
    gamma = _choice(config.gammas, n, generator, device)[:, None, None, None]
    gain = _choice(config.gains, n, generator, device)[:, None, None, None]
    return (x.clamp(0.0, 1.0).pow(gamma) * gain).clamp(0.0, 1.0)
