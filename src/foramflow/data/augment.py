"""Training augmentation on whole batches of tensors (method §5), never per image in Python.

Rotation uniform in 0–360°, zoom ×{0.9, 1, 1.1}, gamma I^{0.5, 1, 2}, gain ×{0.8, 1, 1.2};
optionally mirror images (off by default: the coiling direction of a foraminifer's test
tells taxa apart, e.g. *N. pachyderma* from *N. incompta*, and a mirror image turns one into
the other), and mixup or cutmix of image pairs.
Corners uncovered by the rotation are filled with each image's own background (the median
of its edge pixels), not black: on light-background images black corners would teach the
network something that never occurs when classifying.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    rotation: bool = True
    zooms: tuple[float, ...] = (0.9, 1.0, 1.1)
    gammas: tuple[float, ...] = (0.5, 1.0, 2.0)
    gains: tuple[float, ...] = (0.8, 1.0, 1.2)
    flips: bool = False


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
    if config.flips:  # mirror the input x axis of half the images
        mirror = torch.randint(2, (n,), generator=generator).to(device) * -2.0 + 1.0
        theta[:, :, 0] = theta[:, :, 0] * mirror[:, None]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    background = edge_median(x)
    x = F.grid_sample(x - background, grid, mode="bilinear", align_corners=False) + background
    gamma = _choice(config.gammas, n, generator, device)[:, None, None, None]
    gain = _choice(config.gains, n, generator, device)[:, None, None, None]
    return (x.clamp(0.0, 1.0).pow(gamma) * gain).clamp(0.0, 1.0)


def mix_batch(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    generator: torch.Generator,
    mixup: float = 0.0,
    cutmix: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mix each image with another of the batch: (images, labels, partner labels, λ).

    The loss is λ·CE(labels) + (1 − λ)·CE(partner labels). With both ``mixup`` and
    ``cutmix`` (Beta parameters; 0 = off) each batch uses one of them, chosen at random;
    cutmix pastes a box of the partner image and λ is the share of pixels kept.
    """
    use_cutmix = cutmix > 0 and (mixup <= 0 or torch.rand(1, generator=generator).item() < 0.5)
    alpha = cutmix if use_cutmix else mixup
    if alpha <= 0:
        return x, y, y, 1.0
    lam = _beta(alpha, generator)
    partner = torch.randperm(len(y), generator=generator).to(x.device)
    if not use_cutmix:
        return lam * x + (1 - lam) * x[partner], y, y[partner], lam
    height, width = x.shape[-2:]
    box_h, box_w = round(height * math.sqrt(1 - lam)), round(width * math.sqrt(1 - lam))
    top = int(torch.randint(height - box_h + 1, (1,), generator=generator))
    left = int(torch.randint(width - box_w + 1, (1,), generator=generator))
    x = x.clone()
    x[..., top : top + box_h, left : left + box_w] = x[partner][
        ..., top : top + box_h, left : left + box_w
    ]
    return x, y, y[partner], 1 - box_h * box_w / (height * width)


def _beta(alpha: float, generator: torch.Generator) -> float:
    """A Beta(α, α) draw seeded from ``generator``, so that runs with one seed mix alike."""
    seed = int(torch.randint(2**31, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))
