"""From a training checkpoint to a model package, and the card that goes with it.

``best.pt`` holds the weights and the card of its epoch (threshold chosen on validation, data
summary, validation metrics, command line). ``export_checkpoint`` builds the network, loads the
weights and hands both to ``classifier.package.export_package``, which writes ONNX +
safetensors + card with checksums and refuses an export where ONNX Runtime and PyTorch disagree.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ivcontrast.classifier.aggregate import Aggregation
from ivcontrast.classifier.package import ModelCard, ModelPackage, export_package
from ivcontrast.classifier.preprocess import PreprocessConfig
from ivcontrast.training.loop import load_best
from ivcontrast.training.metrics import binary_report, jsonable, youden_threshold
from ivcontrast.training.slices import Predictions

log = logging.getLogger(__name__)

SYNTHETIC_WARNING = (
    "Trained on synthetic CT phantoms only (ivcontrast synth). It has never seen a patient: "
    "validate it on your own labelled CT, or retrain or fine-tune it there, before any use on "
    "patients. Not a medical device."
)
DEFAULT_INTENDED_USE = (
    "Flags whether a CT series shows intravenous contrast, to check or correct the DICOM "
    "ContrastBolusAgent tag. Research use; validate on local labelled data before relying on it."
)


def compact(report: Mapping[str, Any]) -> dict[str, Any]:
    """A metrics report without the per-bin calibration table (cards stay short)."""
    out = dict(report)
    calibration = out.pop("calibration", None)
    if calibration is not None:
        out["ece"] = calibration["ece"]
        out["brier"] = calibration["brier"]
    return out


def validation_card(
    *,
    predictions: Predictions,
    epoch: int,
    name: str,
    version: str,
    architecture: str,
    preprocess: PreprocessConfig,
    aggregation: Aggregation,
    dropout: float,
    regions: Sequence[str],
    intended_use: str,
    weights_dtype: str,
    training_data: Mapping[str, Any],
    threshold: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> ModelCard:
    """The card of a checkpoint: threshold Youden-optimal on the validation scans (unless
    given), validation metrics at that threshold (optimistic: chosen on the same data)."""
    scan_p = predictions.scan_probabilities(aggregation)
    scan_y = predictions.scan_labels()
    if threshold is None:
        threshold, _ = youden_threshold(scan_y, scan_p)
    scan = binary_report(scan_y, scan_p, threshold, n_boot=n_boot, seed=seed)
    slices = binary_report(
        predictions.slice_y,
        predictions.slice_p,
        threshold,
        n_boot=n_boot,
        seed=seed,
        groups=predictions.series,
    )
    metrics = {
        "validation": {
            "epoch": epoch,
            "threshold_chosen_on": "these validation scans (Youden), so these figures are optimistic",
            "scan": compact(scan),
            "slice": compact(slices),
        }
    }
    return ModelCard(
        name=name,
        version=version,
        architecture=architecture,
        preprocess=preprocess,
        threshold=float(threshold),
        aggregation=aggregation,
        regions=tuple(regions),
        intended_use=intended_use,
        dropout=dropout,
        weights_dtype=weights_dtype,  # type: ignore[arg-type]
        training_data=jsonable(dict(training_data)),
        metrics=jsonable(metrics),
    )


def checkpoint_card(state: Mapping[str, Any]) -> ModelCard:
    return ModelCard.from_dict(json.loads(state["card_json"]))


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    name: str | None = None,
    version: str | None = None,
    threshold: float | None = None,
    review_band: float | None = None,
    weights_dtype: str | None = None,
    intended_use: str | None = None,
    reports: Mapping[str, Mapping[str, Any]] | None = None,
    overwrite: bool = False,
) -> ModelPackage:
    """``best.pt`` (or a run directory holding it) to a model package at ``dest``.

    ``reports``: name -> ``ivcontrast evaluate`` report; each one's metrics go into the card
    under ``metrics.<name>`` (e.g. ``test``), beside the checkpoint's ``validation``.
    """
    from ivcontrast.classifier.networks import build_network

    state = load_best(Path(checkpoint))
    card = checkpoint_card(state)
    changes: dict[str, Any] = {"files": {}, "created": ""}
    for key, value in (
        ("name", name),
        ("version", version),
        ("threshold", threshold),
        ("review_band", review_band),
        ("weights_dtype", weights_dtype),
        ("intended_use", intended_use),
    ):
        if value is not None:
            changes[key] = value
    if reports:
        metrics = dict(card.metrics)
        for key, report in reports.items():
            if key == "validation":
                raise ValueError("'validation' is the checkpoint's own; name the report otherwise")
            metrics[key] = report_metrics(report)
        changes["metrics"] = metrics
    card = replace(card, **changes)
    net = build_network(card.architecture, card.input_channels, card.dropout)
    net.load_state_dict(state["model"], strict=True)
    package = export_package(net, card, dest, overwrite=overwrite)
    log.info("exported %s (epoch %s) to %s", checkpoint, state.get("epoch"), dest)
    return package


# Reports this small keep their per-series calls in the card (e.g. a few real scans).
SERIES_IN_CARD = 20


def report_metrics(report: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an ``ivcontrast evaluate`` report that a card keeps."""
    keep: dict[str, Any] = {
        "data": report.get("data", {}).get("summary"),
        "threshold": report.get("package", {}).get("threshold"),
        "scan": compact(report["scan"]),
        "slice": compact(report["slice"]),
        "by_region": report.get("by_region"),
        "by_phase": report.get("by_phase"),
        "tags": report.get("tags"),
        "failed": len(report.get("data", {}).get("failed", [])),
    }
    series = report.get("series", [])
    if len(series) <= SERIES_IN_CARD:
        keep["series"] = [
            {
                "name": Path(s["path"]).name,
                "region": s.get("region"),
                "label": s["label"],
                "probability": s["probability"],
                "called": s["called"],
                "slices_used": s.get("slices_used"),
            }
            for s in series
        ]
    return jsonable(keep)


def regions_of(items: Sequence[Any]) -> list[str]:
    return sorted({item.region for item in items if item.region})


def slice_counts(n_slices: Sequence[int]) -> dict[str, float]:
    arr = np.asarray(n_slices)
    return {
        "total": int(arr.sum()),
        "per_series_min": int(arr.min()),
        "per_series_median": float(np.median(arr)),
        "per_series_max": int(arr.max()),
    }
