"""From class probabilities to a decision per image: a label, "unsure", or an error (method §7).

An image gets its top class only when the top probability *exceeds* the threshold of that
class; otherwise it is "unsure". The global threshold lies in (0.5, 1.0] (above 0.5 at most one
class can pass), or is 0 to switch the rule off. A bundle may hold per-class thresholds that
override the global one for images predicted as that class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from foramflow.bundle.schema import validate_threshold
from foramflow.errors import InvalidInput
from foramflow.io.class_names import UNSURE

OK, ERROR = "ok", "error"


@dataclass(frozen=True)
class DecisionRule:
    """Thresholds for the unsure rule: a global one and per-class overrides."""

    labels: tuple[str, ...]
    threshold: float
    class_thresholds: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self):
        validate_threshold(self.threshold)
        for label, value in self.class_thresholds.items():
            if label not in self.labels:
                raise InvalidInput(f"class threshold for unknown label {label!r}")
            validate_threshold(value, what=f"class threshold of {label!r}")
        for reserved in (UNSURE, ERROR):
            if reserved in self.labels:
                raise InvalidInput(f"{reserved!r} is reserved and cannot be a class label")

    @property
    def per_class(self) -> np.ndarray:
        """The threshold that applies to each class, float32 (0 everywhere when switched off)."""
        if self.threshold == 0.0:
            return np.zeros(len(self.labels), dtype=np.float32)
        values = [self.class_thresholds.get(label, self.threshold) for label in self.labels]
        return np.asarray(values, dtype=np.float32)

    def decide(self, probs: np.ndarray) -> tuple[list[str], np.ndarray, list[str]]:
        """(class, score, status) for each row of ``probs`` (N, K).

        The comparison is made in float32, the precision of the probabilities, so that a
        score equal to the threshold is "unsure".
        """
        probs = np.asarray(probs, dtype=np.float32)
        top = probs.argmax(axis=1)
        scores = probs[np.arange(len(probs)), top]
        sure = scores > self.per_class[top]
        classes = [self.labels[k] if s else UNSURE for k, s in zip(top, sure, strict=True)]
        status = [OK if s else UNSURE for s in sure]
        return classes, scores, status

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "class_thresholds": dict(self.class_thresholds)}
