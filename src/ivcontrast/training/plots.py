"""Figures for reports and cards: ROC, calibration, slice probabilities, training history.

matplotlib with the Agg backend (files only, no display); each function writes one PNG.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ivcontrast.training.metrics import roc_curve


def _save(fig: Any, path: Path) -> Path:
    """Write ``fig`` as a palette PNG: a third of the bytes of full colour for line plots
    (figures travel in model packages, which have a size budget)."""
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(colors=64).save(path, format="PNG", optimize=True)
    return path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt_ci(report: Mapping[str, Any], key: str) -> str:
    value = report.get(key)
    low, high = report.get("ci95", {}).get(key, (None, None))
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    if low is None or high is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def roc_plot(
    path: Path,
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, Mapping[str, Any]]],
    title: str,
) -> Path:
    """``curves``: name -> (labels, scores, its metrics report) with 'auc', 'ci95' and
    'at_threshold' (the operating point, marked)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 5.0), dpi=110)
    for name, (y, p, report) in curves.items():
        if 0 < int(np.sum(y)) < len(y):
            fpr, tpr, _ = roc_curve(y, p)
            (line,) = ax.step(fpr, tpr, where="post", label=f"{name}: AUC {_fmt_ci(report, 'auc')}")
            point = report["at_threshold"]
            ax.plot(
                1 - point["specificity"],
                point["sensitivity"],
                "o",
                color=line.get_color(),
                label=f"{name} at threshold {point['threshold']:.3f}",
            )
    ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=0.8)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def calibration_plot(path: Path, reports: Mapping[str, Mapping[str, Any]], title: str) -> Path:
    """Reliability diagrams from ``metrics.calibration`` outputs (name -> calibration dict)."""
    plt = _pyplot()
    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(5.2, 6.0), dpi=110, gridspec_kw={"height_ratios": [3, 1]}, sharex=True
    )
    ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=0.8, label="perfect calibration")
    width = 1.0 / max(1, len(reports) + 1)
    for k, (name, cal) in enumerate(reports.items()):
        bins = cal["bins"]
        centre = np.array([(b["low"] + b["high"]) / 2 for b in bins])
        mean_p = np.array(
            [np.nan if b["mean_probability"] is None else b["mean_probability"] for b in bins],
            dtype=float,
        )
        observed = np.array(
            [np.nan if b["observed_rate"] is None else b["observed_rate"] for b in bins],
            dtype=float,
        )
        counts = np.array([b["count"] for b in bins])
        ok = counts > 0
        ax.plot(
            mean_p[ok],
            observed[ok],
            "o-",
            label=f"{name}: ECE {cal['ece']:.3f}, Brier {cal['brier']:.3f}",
        )
        step = bins[0]["high"] - bins[0]["low"]
        hist.bar(
            centre - step / 2 + step * width * (k + 0.5), counts, width=step * width, label=name
        )
    ax.set_ylabel("observed share with contrast")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=7)
    hist.set_yscale("log")
    hist.set_xlabel("predicted probability of contrast")
    hist.set_ylabel("cases")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def slice_curve_plot(
    path: Path,
    z_mm: np.ndarray,
    probabilities: np.ndarray,
    threshold: float,
    scan_probability: float,
    title: str,
) -> Path:
    """Slice probability against position along the slice normal (head to the right)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.0), dpi=110)
    ax.plot(z_mm, probabilities, "o-", markersize=3, linewidth=1, label="slices")
    ax.axhline(
        threshold, color="red", linestyle="--", linewidth=0.8, label=f"threshold {threshold:.3f}"
    )
    ax.axhline(
        scan_probability,
        color="black",
        linestyle=":",
        linewidth=0.8,
        label=f"scan {scan_probability:.3f}",
    )
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("z along the slice normal (mm, toward the head)")
    ax.set_ylabel("P(contrast)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def history_plot(path: Path, history: Sequence[Mapping[str, Any]]) -> Path:
    """Training and validation loss, and validation AUCs, per epoch."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, auc_ax) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=110)
    loss_ax.plot(epochs, [row["train_loss"] for row in history], "o-", label="train (weighted)")
    loss_ax.plot(epochs, [row["val_loss"] for row in history], "o-", label="validation")
    loss_ax.set_yscale("log")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("binary cross-entropy")
    loss_ax.legend(fontsize=8)
    for key, label in (("val_slice_auc", "slices"), ("val_scan_auc", "scans")):
        auc_ax.plot(epochs, [row[key] for row in history], "o-", label=label)
    auc_ax.set_xlabel("epoch")
    auc_ax.set_ylabel("validation AUC")
    auc_ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path
