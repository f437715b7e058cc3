"""Where and in which precision to train: the same code on a laptop CPU or a GPU."""

from __future__ import annotations

import torch

from foramflow.bundle.engine import cpu_has_bf16
from foramflow.errors import InvalidInput


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else the CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InvalidInput(f"device {name!r} requested but no CUDA GPU is available")
        if (device.index or 0) >= count:
            raise InvalidInput(f"device {name!r} requested but this machine has {count} GPU(s)")
    return device


def use_bf16(precision: str, device: torch.device) -> bool:
    """Resolve 'auto' | 'bf16' | 'fp32' into whether to autocast to bfloat16, by what the
    hardware supports; a CPU run with bf16 times the two instead (:mod:`.precision`)."""
    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_bf16()


class CompiledOrEager:
    """Call a torch.compile'd network, falling back to the plain one if compilation fails.

    Compilation (a C++ toolchain turning the graph into fused kernels) fuses the cyclic
    roll's copies and batch norm with ReLU; it costs a minute or two once, so it pays off
    only on long runs. Where no compiler works, training goes on uncompiled.
    """

    def __init__(self, network: torch.nn.Module, warn):
        self.network = network
        self._compiled = torch.compile(network)
        self._warn = warn

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._compiled is None:
            return self.network(x)
        try:
            return self._compiled(x)
        except Exception as err:
            self._warn(f"torch.compile failed ({type(err).__name__}); training uncompiled")
            self._compiled = None
            return self.network(x)
