"""Checkpoints read without running code, and checked before anything trains on them.

A run folder may come from someone else. ``torch.load`` with ``weights_only`` rebuilds
tensors and plain values (dicts, lists, numbers, text) only, never objects whose
unpickling could run code; every checkpoint foramflow writes holds nothing else. What
is read is then checked against the network it is for (the same parameter names and
shapes, finite values) so that a truncated, crafted or mismatched file is refused with
one line naming it, never trained on or exported.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from foramflow.errors import ForamflowError
from foramflow.io.files import atomic_path


class CheckpointError(ForamflowError):
    """A checkpoint that cannot be read, or does not hold what the run needs."""


def save_checkpoint(content, path: str | Path) -> None:
    """Write ``content`` (tensors and plain values) atomically.

    Through an open file: a full disk then raises the OSError naming the file, where
    ``torch.save`` given a path raises an unexplained RuntimeError.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(content, handle)


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint's content, built from tensors and plain values only."""
    path = Path(path)
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path}: holds objects other than tensors and plain values; refused unread, "
            "since loading them could run code"
        ) from None
    except OSError as err:
        if err.filename is not None:  # the file itself cannot be opened: said as such
            raise
        raise CheckpointError(f"{path}: not a readable checkpoint, truncated? ({err})") from None
    except (RuntimeError, EOFError, ValueError, TypeError, KeyError, IndexError) as err:
        reason = first_line(err)
        raise CheckpointError(f"{path}: not a readable checkpoint, truncated? ({reason})") from None
    if not isinstance(content, dict):
        raise CheckpointError(f"{path}: not a checkpoint (a {type(content).__name__})")
    return content


def first_line(err: BaseException) -> str:
    """An error's reason, cut to its first sentence for a one-line message."""
    line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return line.split(". ")[0][:160]


def check_weights(weights, module: nn.Module, path: str | Path, what: str = "weights") -> None:
    """Refuse ``weights`` unless they are ``module``'s state dict: the same names, shapes
    and types, every value finite."""
    if not isinstance(weights, Mapping):
        raise CheckpointError(f"{path}: its {what} are not a table of tensors")
    expected = module.state_dict()
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        names = ", ".join((missing or extra)[:3])
        problem = "lack" if missing else "have unknown"
        raise CheckpointError(
            f"{path}: its {what} {problem} {len(missing or extra)} parameter(s) of the "
            f"network ({names}): from another network?"
        )
    for name, value in weights.items():
        reference = expected[name]
        if not isinstance(value, torch.Tensor) or value.shape != reference.shape:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise CheckpointError(
                f"{path}: {what} {name} has shape {shape}, the network's {tuple(reference.shape)}"
            )
        if value.is_floating_point() != reference.is_floating_point():
            raise CheckpointError(f"{path}: {what} {name} has type {value.dtype}")
    check_finite(weights, path, what)


def check_finite(content, path: str | Path, what: str) -> None:
    """Refuse NaN or infinite values in any tensor of ``content`` (nested dicts and lists)."""
    for name, tensor in _tensors(content, what):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: {name} holds NaN or infinite values")


def _tensors(content, name: str):
    if isinstance(content, torch.Tensor):
        yield name, content
    elif isinstance(content, Mapping):
        for key, value in content.items():
            yield from _tensors(value, f"{name} {key}")
    elif isinstance(content, (list, tuple)):
        for i, value in enumerate(content):
            yield from _tensors(value, f"{name} {i}")


def load_weights(module: nn.Module, path: str | Path) -> None:
    """Load a checkpoint of ``module``'s weights (``checkpoint_best.pt``), checked first."""
    weights = read_checkpoint(path)
    check_weights(weights, module, path)
    module.load_state_dict(weights)
