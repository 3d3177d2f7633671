"""Slices in memory: the slices of cached series, their predictions, and batches on the device.

``SliceSet`` holds every slice of some cached series as the cache stores them (int16 HU
eighths) with the scan's label; ``Predictions`` holds slice probabilities and aggregates them
per series; ``SliceBatches`` gathers batches as float HU tensors on the training device.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ivcontrast.classifier.aggregate import Aggregation, aggregate
from ivcontrast.training.cache import HU_STEPS, CachedSeries

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True, eq=False)
class SliceSet:
    """Every slice of some cached series, in memory: HU, labels, series of each slice."""

    hu: np.ndarray  # (n, S, S) int16 HU eighths, as the cache stores them
    y: np.ndarray  # (n,) float32 0/1
    series: np.ndarray  # (n,) index into the series list it was built from
    n_series: int
    weight: np.ndarray | None = None  # (n,) sampling weight per slice; None = uniform

    @classmethod
    def build(
        cls,
        entries: Sequence[CachedSeries],
        labels: Sequence[int],
        weights: Sequence[float] | None = None,
    ) -> SliceSet:
        if len(entries) != len(labels):
            raise ValueError(f"{len(entries)} series but {len(labels)} labels")
        if not entries:
            raise ValueError("no series")
        counts = [e.n_slices for e in entries]
        uniform = weights is None or len(set(weights)) <= 1
        return cls(
            hu=np.concatenate([e.hu for e in entries]),
            y=np.repeat(np.asarray(labels, dtype=np.float32), counts),
            series=np.repeat(np.arange(len(entries)), counts),
            n_series=len(entries),
            weight=None if uniform else np.repeat(np.asarray(weights, dtype=np.float64), counts),
        )

    def __len__(self) -> int:
        return int(self.y.size)

    @property
    def series_labels(self) -> np.ndarray:
        labels = np.zeros(self.n_series, dtype=np.int64)
        labels[self.series] = self.y.astype(np.int64)
        return labels


@dataclass(frozen=True, eq=False)
class Predictions:
    """Slice probabilities of a ``SliceSet`` and what they add up to per series."""

    slice_p: np.ndarray
    slice_y: np.ndarray
    series: np.ndarray
    n_series: int

    def scan_probabilities(self, aggregation: Aggregation) -> np.ndarray:
        out = np.full(self.n_series, np.nan)
        order = np.argsort(self.series, kind="stable")
        bounds = np.searchsorted(self.series[order], np.arange(self.n_series + 1))
        for s in range(self.n_series):
            members = order[bounds[s] : bounds[s + 1]]
            if members.size:
                out[s] = aggregate(self.slice_p[members], aggregation)
        return out

    def scan_labels(self) -> np.ndarray:
        labels = np.zeros(self.n_series, dtype=np.int64)
        labels[self.series] = self.slice_y.astype(np.int64)
        return labels

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("wb") as fh:
            np.savez(
                fh,
                slice_p=self.slice_p,
                slice_y=self.slice_y,
                series=self.series,
                n_series=self.n_series,
            )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Predictions:
        with np.load(path, allow_pickle=False) as data:
            return cls(data["slice_p"], data["slice_y"], data["series"], int(data["n_series"]))


class SliceBatches:
    """Gathers batches of a SliceSet as HU tensors (N, 1, S, S) float32 on the device.

    On CUDA the whole set moves to the GPU once (int16, 2 bytes a pixel) so that batches are
    gathered there; on the CPU they are gathered from the numpy array.
    """

    def __init__(self, data: SliceSet, device: torch.device) -> None:
        import torch

        self.data = data
        self.device = device
        self.y = torch.from_numpy(data.y).to(device)
        self.on_device = torch.from_numpy(data.hu).to(device) if device.type == "cuda" else None

    def get(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        idx = np.sort(idx)
        if self.on_device is not None:
            t = torch.from_numpy(idx).to(self.device)
            hu = self.on_device[t]
            y = self.y[t]
        else:
            hu = torch.from_numpy(self.data.hu[idx]).to(self.device)
            y = self.y[torch.from_numpy(idx)]
        return (hu.float() * (1.0 / HU_STEPS)).unsqueeze(1), y
