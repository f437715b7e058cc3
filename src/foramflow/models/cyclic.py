"""Cyclic layers (Dieleman et al. 2016): invariance to 90° rotations by weight sharing.

The four rotations of each image travel through the network as four *paths* stacked on the
batch axis, path-major: a tensor of shape (4·B, …) holds path 0 for all B images, then
path 1, and so on. Path k sees the input rotated by k·90°.

* :func:`cyclic_slice` makes the four paths.
* :func:`cyclic_roll` lets every path see the feature maps of all four, each rotated back
  into its own frame, stacked on channels (×4). Rotating the input permutes the paths, and
  roll commutes with that permutation, so the network stays equivariant.
* :func:`cyclic_pool` combines the paths (max, or MISO's mean): the result is invariant.
"""

from __future__ import annotations

import torch
from torch import nn

N_PATHS = 4
_SPATIAL = (-2, -1)


def cyclic_slice(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (4·B, C, H, W): the input at 0, 90, 180 and 270 degrees."""
    return torch.cat([torch.rot90(x, k, _SPATIAL) for k in range(N_PATHS)], dim=0)


def cyclic_roll(x: torch.Tensor) -> torch.Tensor:
    """(4·B, C, H, W) → (4·B, 4·C, H, W).

    Path i receives, for j = 0..3, path (i + j) mod 4 rotated by −j·90°, i.e. brought into
    path i's frame. Implemented as three whole-tensor rotations and a roll along the path
    axis, with no per-path Python loop.
    """
    paths = x.unflatten(0, (N_PATHS, -1))  # (4, B, C, H, W)
    parts = [paths]
    for j in range(1, N_PATHS):
        parts.append(torch.roll(torch.rot90(paths, -j, _SPATIAL), shifts=-j, dims=0))
    return torch.cat(parts, dim=2).flatten(0, 1)


def cyclic_pool(x: torch.Tensor, mode: str = "max") -> torch.Tensor:
    """(4·B, …) → (B, …): combine the four paths by max or mean."""
    paths = x.unflatten(0, (N_PATHS, -1))
    if mode == "max":
        return paths.amax(dim=0)
    if mode == "mean":
        return paths.mean(dim=0)
    raise ValueError(f"cyclic pool must be 'max' or 'mean', not {mode!r}")


class CyclicSlice(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cyclic_slice(x)


class CyclicRoll(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cyclic_roll(x)


class CyclicPool(nn.Module):
    def __init__(self, mode: str = "max"):
        super().__init__()
        if mode not in ("max", "mean"):
            raise ValueError(f"cyclic pool must be 'max' or 'mean', not {mode!r}")
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cyclic_pool(x, self.mode)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"
