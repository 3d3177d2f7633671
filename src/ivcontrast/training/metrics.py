"""Binary classification metrics with bootstrap confidence intervals (numpy only).

Conventions: ``y`` holds labels (1 = contrast), ``p`` scores or probabilities; a case is called
positive when ``p >= threshold``. Undefined values (a sensitivity without positives, an AUC
with one class) are ``nan`` here and ``null`` in JSON reports.

Confidence intervals are percentile intervals over ``n_boot`` bootstrap resamples drawn from a
seeded generator. With ``groups`` (e.g. the scan of each slice) whole groups are resampled:
slices of one scan are not independent, and resampling them one by one would give intervals
that are too narrow. Resamples holding a single class are left out of the AUC's interval and
counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

THRESHOLD_STATS = ("accuracy", "sensitivity", "specificity", "f1", "ppv", "npv")


def _arrays(
    y: Sequence[float] | np.ndarray, p: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    ya = np.asarray(y, dtype=np.int64).ravel()
    pa = np.asarray(p, dtype=np.float64).ravel()
    if ya.shape != pa.shape:
        raise ValueError(f"{ya.size} labels but {pa.size} scores")
    if np.any((ya != 0) & (ya != 1)):
        raise ValueError("labels must be 0 or 1")
    return ya, pa


def roc_auc(y: Sequence[float] | np.ndarray, p: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties); nan with one class."""
    ya, pa = _arrays(y, p)
    n1 = int(ya.sum())
    n0 = ya.size - n1
    if n1 == 0 or n0 == 0:
        return math.nan
    ranks = rankdata(pa)
    return float((ranks[ya == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def roc_curve(
    y: Sequence[float] | np.ndarray, p: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds): one point per distinct score, from (0, 0) at +inf to (1, 1)."""
    ya, pa = _arrays(y, p)
    thresholds = np.unique(pa)[::-1]
    n1 = max(int(ya.sum()), 1)
    n0 = max(ya.size - int(ya.sum()), 1)
    pos = np.sort(pa[ya == 1])
    neg = np.sort(pa[ya == 0])
    tp = pos.size - np.searchsorted(pos, thresholds, side="left")
    fp = neg.size - np.searchsorted(neg, thresholds, side="left")
    fpr = np.concatenate(([0.0], fp / n0))
    tpr = np.concatenate(([0.0], tp / n1))
    return fpr, tpr, np.concatenate(([np.inf], thresholds))


@dataclass(frozen=True)
class ThresholdStats:
    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def sensitivity(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> float:
        return _ratio(self.tn, self.tn + self.fp)

    @property
    def ppv(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def npv(self) -> float:
        return _ratio(self.tn, self.tn + self.fn)

    @property
    def accuracy(self) -> float:
        return _ratio(self.tp + self.tn, self.tp + self.tn + self.fp + self.fn)

    @property
    def f1(self) -> float:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "threshold": self.threshold,
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
        }
        out.update({name: getattr(self, name) for name in THRESHOLD_STATS})
        return out


def _ratio(a: int, b: int) -> float:
    return a / b if b else math.nan


def at_threshold(
    y: Sequence[float] | np.ndarray, p: Sequence[float] | np.ndarray, threshold: float
) -> ThresholdStats:
    ya, pa = _arrays(y, p)
    called = pa >= threshold
    return ThresholdStats(
        threshold=float(threshold),
        tp=int(np.sum(called & (ya == 1))),
        fp=int(np.sum(called & (ya == 0))),
        tn=int(np.sum(~called & (ya == 0))),
        fn=int(np.sum(~called & (ya == 1))),
    )


def youden_threshold(
    y: Sequence[float] | np.ndarray, p: Sequence[float] | np.ndarray
) -> tuple[float, float]:
    """(threshold, J): the threshold that maximises sensitivity + specificity - 1.

    Candidates lie midway between neighbouring distinct scores (and beyond both ends), so the
    threshold sits in the middle of the gap it opens rather than on a validation score. Among
    equal J, the widest gap wins (the call least sensitive to small shifts of the scores).
    For probabilities the threshold is kept within [0, 1].
    """
    ya, pa = _arrays(y, p)
    if ya.sum() == 0 or ya.sum() == ya.size:
        raise ValueError("the Youden threshold needs both classes")
    scores = np.unique(pa)
    lows = np.concatenate(([scores[0] - 1.0], scores))
    highs = np.concatenate((scores, [scores[-1] + 1.0]))
    candidates = (lows + highs) / 2
    gaps = highs - lows
    pos = np.sort(pa[ya == 1])
    neg = np.sort(pa[ya == 0])
    sens = (pos.size - np.searchsorted(pos, candidates, side="left")) / pos.size
    spec = np.searchsorted(neg, candidates, side="left") / neg.size
    j = sens + spec - 1.0
    best = np.flatnonzero(np.isclose(j, j.max(), rtol=0, atol=1e-12))
    choice = best[int(np.argmax(gaps[best]))]
    threshold = float(candidates[choice])
    if scores[0] >= 0.0 and scores[-1] <= 1.0:  # probabilities: keep the threshold one too
        threshold = min(max(threshold, 0.0), 1.0)
    return threshold, float(j[choice])


def calibration(
    y: Sequence[float] | np.ndarray, p: Sequence[float] | np.ndarray, bins: int = 10
) -> dict[str, Any]:
    """Reliability bins (equal width on [0, 1]), expected calibration error and Brier score.

    ECE = sum over bins of (cases in bin / cases) x |observed rate - mean probability|.
    """
    ya, pa = _arrays(y, p)
    if np.any((pa < 0) | (pa > 1)):
        raise ValueError("calibration needs probabilities in [0, 1]")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, pa, side="right") - 1, 0, bins - 1)
    rows = []
    ece = 0.0
    for b in range(bins):
        members = which == b
        n = int(members.sum())
        mean_p = float(pa[members].mean()) if n else math.nan
        observed = float(ya[members].mean()) if n else math.nan
        if n:
            ece += n / ya.size * abs(observed - mean_p)
        rows.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": n,
                "mean_probability": mean_p,
                "observed_rate": observed,
            }
        )
    return {
        "bins": rows,
        "ece": float(ece) if ya.size else math.nan,
        "brier": float(np.mean((pa - ya) ** 2)) if ya.size else math.nan,
    }


def bootstrap_indices(
    n: int, n_boot: int, seed: int, groups: Sequence[Any] | np.ndarray | None = None
) -> list[np.ndarray]:
    """``n_boot`` resamples of ``range(n)``: of single cases, or of whole groups."""
    rng = np.random.default_rng([seed, 0xB007])
    if groups is None:
        return [rng.integers(0, n, n) for _ in range(n_boot)]
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(inverse.max() + 1))
    members = np.split(order, starts[1:])
    out = []
    for _ in range(n_boot):
        chosen = rng.integers(0, len(members), len(members))
        out.append(np.concatenate([members[g] for g in chosen]))
    return out


def percentile_ci(values: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(v, [tail, 100 - tail])
    return float(low), float(high)


def binary_report(
    y: Sequence[float] | np.ndarray,
    p: Sequence[float] | np.ndarray,
    threshold: float,
    n_boot: int = 1000,
    seed: int = 0,
    groups: Sequence[Any] | np.ndarray | None = None,
    bins: int = 10,
) -> dict[str, Any]:
    """AUC, the statistics at ``threshold`` and the Youden threshold, with bootstrap 95% CIs,
    and calibration. ``groups`` = resample whole groups (see the module docstring)."""
    ya, pa = _arrays(y, p)
    report: dict[str, Any] = {
        "n": int(ya.size),
        "positives": int(ya.sum()),
        "negatives": int(ya.size - ya.sum()),
        "auc": roc_auc(ya, pa),
    }
    stats = at_threshold(ya, pa, threshold)
    report["at_threshold"] = stats.to_dict()
    both = 0 < ya.sum() < ya.size
    if both:
        youden, j = youden_threshold(ya, pa)
        report["youden"] = {"threshold": youden, "j": j, **at_threshold(ya, pa, youden).to_dict()}
    else:
        report["youden"] = None
    samples: dict[str, list[float]] = {"auc": [], **{name: [] for name in THRESHOLD_STATS}}
    single_class = 0
    for idx in bootstrap_indices(ya.size, n_boot, seed, groups) if n_boot > 0 and ya.size else []:
        yb, pb = ya[idx], pa[idx]
        auc = roc_auc(yb, pb)
        if math.isnan(auc):
            single_class += 1
        else:
            samples["auc"].append(auc)
        sb = at_threshold(yb, pb, threshold)
        for name in THRESHOLD_STATS:
            samples[name].append(getattr(sb, name))
    report["ci95"] = {name: list(percentile_ci(values)) for name, values in samples.items()}
    report["bootstrap"] = {
        "samples": int(n_boot),
        "seed": int(seed),
        "resampled": "groups" if groups is not None else "cases",
        "single_class_samples": single_class,
    }
    report["calibration"] = calibration(ya, pa, bins)
    return report


def jsonable(value: Any) -> Any:
    """``value`` with nan and inf as None and numpy scalars as Python numbers (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
