"""Slice probabilities to one scan probability.

- ``mean``: the paper's mean of all slice probabilities. A scan with many slices that show no
  enhancing structure (skull vertex, lung bases, legs) is pulled toward "no contrast" by them.
- ``topk_mean``: the mean of the ``k`` highest slice probabilities (all of them when fewer).
  Independent of how many slices without vessels a scan has, as long as ``k`` slices show
  enhancing structures; its threshold must be chosen on validation data like any other
  (``ivcontrast evaluate`` reports the Youden-optimal one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

METHODS = ("mean", "topk_mean")


@dataclass(frozen=True)
class Aggregation:
    method: Literal["mean", "topk_mean"] = "topk_mean"
    k: int = 8  # used by topk_mean

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"aggregation {self.method!r}: expected one of {', '.join(METHODS)}")
        if self.k < 1:
            raise ValueError(f"aggregation k {self.k} < 1")

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "k": self.k}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Aggregation:
        unknown = sorted(set(data) - {"method", "k"})
        if unknown:
            raise ValueError(f"unknown aggregation parameters: {', '.join(unknown)}")
        return cls(**data)

    def __str__(self) -> str:
        return f"topk_mean(k={self.k})" if self.method == "topk_mean" else self.method


def aggregate(probabilities: np.ndarray, aggregation: Aggregation) -> float:
    """One scan probability from slice probabilities (any order)."""
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    if p.size == 0:
        raise ValueError("no slice probabilities to aggregate")
    if aggregation.method == "mean":
        return float(p.mean())
    k = min(aggregation.k, p.size)
    return float(np.partition(p, p.size - k)[p.size - k :].mean())


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Probabilities from logits, without overflow for large magnitudes."""
    z = np.asarray(logits, dtype=np.float64)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out
