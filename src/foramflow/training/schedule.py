"""ALRS, the automatic learning-rate schedule of the paper (after dlib), method §5.

Keep the last n training-batch losses (n = L epochs' worth of batches); fit a straight line
by least squares; P is the probability that the true slope is below zero under a Gaussian
with the fitted slope and its standard error. While the loss still falls P is high; when
P < 0.51 the loss has stopped falling: halve the learning rate, wait another n batches, and
stop training after a set number of drops.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import Enum

import numpy as np

from foramflow.errors import InvalidInput


class Decision(str, Enum):
    CONTINUE = "continue"
    DROP = "drop"
    STOP = "stop"


def probability_decreasing(losses: np.ndarray) -> float:
    """P(slope < 0) for a least-squares line through ``losses`` against their index."""
    n = len(losses)
    if n < 3:
        return 1.0
    x = np.arange(n, dtype=np.float64)
    x -= x.mean()
    y = np.asarray(losses, dtype=np.float64)
    sxx = float(x @ x)
    slope = float(x @ (y - y.mean())) / sxx
    residuals = y - y.mean() - slope * x
    variance = float(residuals @ residuals) / (n - 2)
    if variance == 0.0:
        return 1.0 if slope < 0 else 0.0
    standard_error = math.sqrt(variance / sxx)
    return 0.5 * math.erfc(slope / (standard_error * math.sqrt(2.0)))


def default_window_epochs(n_train_images: int) -> int:
    """The paper's L: 40 epochs under 5 000 images, 10 above 10 000, linear in between."""
    if n_train_images <= 5000:
        return 40
    if n_train_images >= 10000:
        return 10
    return round(40 - 30 * (n_train_images - 5000) / 5000)


@dataclass
class ALRS:
    """Stateful schedule: call :meth:`step` with every training-batch loss."""

    window: int
    max_drops: int = 4
    threshold: float = 0.51
    factor: float = 0.5

    def __post_init__(self):
        if self.window < 3:
            raise InvalidInput(
                f"the ALRS window must hold at least 3 training batches, not {self.window}: "
                "give --alrs-window more epochs, or train a fixed number of --epochs"
            )
        self._losses: deque[float] = deque(maxlen=self.window)
        self._since_test = 0
        self.drops = 0
        self.last_probability = 1.0

    def step(self, loss: float) -> Decision:
        self._losses.append(float(loss))
        self._since_test += 1
        if self._since_test < self.window:
            return Decision.CONTINUE
        self.last_probability = probability_decreasing(np.fromiter(self._losses, float))
        if self.last_probability >= self.threshold:
            return Decision.CONTINUE
        self.drops += 1
        self._since_test = 0
        return Decision.STOP if self.drops >= self.max_drops else Decision.DROP

    def state_dict(self) -> dict:
        return {"losses": list(self._losses), "since_test": self._since_test, "drops": self.drops}

    def load_state_dict(self, state: dict) -> None:
        self._losses = deque(state["losses"], maxlen=self.window)
        self._since_test = state["since_test"]
        self.drops = state["drops"]


@dataclass
class WarmupCosine:
    """Linear warm-up over ``warmup`` batches, then cosine decay to zero at ``total``.

    Sets each parameter group's learning rate from the rate it started with, at every
    :meth:`step`; never drops or stops (the epoch count ends training).
    """

    optimizer: object
    total: int
    warmup: int = 0

    def __post_init__(self):
        self.base = [group["lr"] for group in self.optimizer.param_groups]
        self.steps = 0
        self.drops = 0
        self.last_probability = float("nan")
        self._apply()

    def factor(self) -> float:
        if self.steps < self.warmup:
            return (self.steps + 1) / (self.warmup + 1)
        done = (self.steps - self.warmup) / max(1, self.total - self.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(done, 1.0)))

    def step(self, loss: float) -> Decision:
        self.steps += 1
        self._apply()
        return Decision.CONTINUE

    def _apply(self) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base):
            group["lr"] = base * self.factor()

    def state_dict(self) -> dict:
        return {"steps": self.steps, "base": self.base}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.base = state["steps"], state["base"]
        self._apply()
