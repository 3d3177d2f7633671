"""A model package on labelled series: predictions as served, metrics, tag agreement, report.

Each series goes through the slice cache (preprocessed with the package's own
``PreprocessConfig``) and then ``Classifier.infer``: the serving engine's backend, aggregation
and threshold, so the figures describe what the node would have called.

The report holds scan-level metrics (AUC, and accuracy, sensitivity, specificity, F1 at the
card's threshold, each with a bootstrap 95% CI; the Youden-optimal threshold; calibration),
the same on slices (each slice labelled with its scan; CIs resample whole scans), breakdowns by
region and phase, and what the DICOM ContrastBolusAgent said: against the truth (missing,
wrong, correct) and against the predictions (``classifier.tags.tag_status``).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ivcontrast.classifier.engine import Classifier, SeriesPrediction
from ivcontrast.classifier.errors import ClassifierError
from ivcontrast.classifier.tags import tag_says_contrast, tag_status
from ivcontrast.training.cache import CachedSeries, Outcome, SliceCache, fill
from ivcontrast.training.datasets import LabelledSeries, summarise
from ivcontrast.training.metrics import at_threshold, binary_report, percentile_ci, roc_auc

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Evaluated:
    """One labelled series and what the model made of it (or why it could not)."""

    item: LabelledSeries
    prediction: SeriesPrediction | None
    has_header: bool = False
    agent: str | None = None
    error: str | None = None


def predict_all(
    classifier: Classifier,
    items: Sequence[LabelledSeries],
    cache: SliceCache,
    workers: int = 1,
    progress: Callable[[str, Outcome | None], None] | None = None,
) -> list[Evaluated]:
    """Preprocess (through the cache) and classify every item; failures are kept, not raised."""
    if cache.config != classifier.card.preprocess:
        raise ValueError("the cache's preprocessing differs from the package's")
    entries: list[CachedSeries | None] = [None] * len(items)
    errors: list[str | None] = [None] * len(items)
    if cache.root is not None:
        outcomes = fill(
            cache,
            [item.path for item in items],
            workers,
            (lambda o: progress("preprocess", o)) if progress else None,
        )
        for o in outcomes:
            if o.key is None:
                errors[o.index] = o.error
            else:
                entries[o.index] = cache.load(o.key)
    results = []
    for i, item in enumerate(items):
        entry = entries[i]
        if entry is None and errors[i] is None:
            try:
                entry, _ = cache.get(item.path)
            except (ClassifierError, OSError) as exc:
                errors[i] = str(exc)
        if entry is None:
            log.warning("%s: not evaluated: %s", item.path, errors[i])
            results.append(Evaluated(item, None, error=errors[i] or "cache entry vanished"))
            continue
        prediction = classifier.infer(entry.model_input(classifier.card.preprocess.windows))
        results.append(Evaluated(item, prediction, entry.has_header, entry.contrast_bolus_agent))
        if progress:
            progress("classify", None)
    return results


def _group_stats(
    y: np.ndarray, p: np.ndarray, threshold: float, n_boot: int, seed: int
) -> dict[str, Any]:
    stats = at_threshold(y, p, threshold)
    out: dict[str, Any] = {
        "n": int(y.size),
        "contrast": int(y.sum()),
        "no_contrast": int(y.size - y.sum()),
        "auc": roc_auc(y, p),
        "accuracy": stats.accuracy,
        "sensitivity": stats.sensitivity,
        "specificity": stats.specificity,
        "errors": stats.fp + stats.fn,
    }
    if n_boot > 0 and y.size:
        rng = np.random.default_rng([seed, 0xACC])
        accs = [
            at_threshold(y[idx], p[idx], threshold).accuracy
            for idx in (rng.integers(0, y.size, y.size) for _ in range(n_boot))
        ]
        out["accuracy_ci95"] = list(percentile_ci(accs))
    return out


def tag_summary(results: Sequence[Evaluated]) -> dict[str, Any]:
    """ContrastBolusAgent against the truth and against the predictions (DICOM series only)."""
    with_header = [r for r in results if r.has_header and r.prediction is not None]
    vs_truth: Counter[str] = Counter()
    vs_prediction: Counter[str] = Counter()
    fixed = 0
    for r in with_header:
        assert r.prediction is not None
        claimed = tag_says_contrast(r.agent)
        truth = (
            "missing" if claimed is None else ("correct" if claimed == r.item.contrast else "wrong")
        )
        vs_truth[truth] += 1
        vs_prediction[tag_status(r.agent, r.prediction.contrast)] += 1
        if truth != "correct" and r.prediction.contrast == r.item.contrast:
            fixed += 1
    n = len(with_header)
    bad = vs_truth["missing"] + vs_truth["wrong"]
    return {
        "series_with_dicom_header": n,
        "tag_vs_truth": {k: vs_truth[k] for k in ("correct", "missing", "wrong")},
        "missing_or_wrong_fraction": bad / n if n else None,
        "tag_vs_prediction": {k: vs_prediction[k] for k in ("agrees", "disagrees", "missing")},
        "prediction_agrees_with_tag_fraction": vs_prediction["agrees"] / n if n else None,
        "missing_or_wrong_tags_the_model_calls_right": fixed,
        "missing_or_wrong_tags_the_model_calls_right_fraction": fixed / bad if bad else None,
    }


def build_report(
    results: Sequence[Evaluated],
    threshold: float,
    n_boot: int = 1000,
    seed: int = 0,
    bins: int = 10,
) -> dict[str, Any]:
    """The evaluation report (a JSON-ready dict apart from nan; see ``metrics.jsonable``)."""
    done = [r for r in results if r.prediction is not None]
    if not done:
        raise ValueError("no series could be evaluated")
    scan_y = np.array([r.item.label for r in done], dtype=np.int64)
    scan_p = np.array([r.prediction.probability for r in done])  # type: ignore[union-attr]
    slice_p = np.concatenate([r.prediction.slice_probabilities for r in done])  # type: ignore[union-attr]
    counts = [r.prediction.slices_used for r in done]  # type: ignore[union-attr]
    slice_y = np.repeat(scan_y, counts)
    slice_series = np.repeat(np.arange(len(done)), counts)
    report: dict[str, Any] = {
        "data": {
            "summary": summarise([r.item for r in done]),
            "slices": int(slice_p.size),
            "failed": [
                {"path": str(r.item.path), "error": r.error}
                for r in results
                if r.prediction is None
            ],
        },
        "scan": binary_report(scan_y, scan_p, threshold, n_boot=n_boot, seed=seed, bins=bins),
        "slice": binary_report(
            slice_y, slice_p, threshold, n_boot=n_boot, seed=seed, groups=slice_series, bins=bins
        ),
    }
    # The paper's other scan read-out: the share of slices called positive.
    report["slice_fraction_positive"] = {
        "contrast_mean": _mean_fraction(done, threshold, True),
        "no_contrast_mean": _mean_fraction(done, threshold, False),
    }
    for key, attr in (("by_region", "region"), ("by_phase", "phase")):
        groups: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(done):
            groups[getattr(r.item, attr) or "unknown"].append(i)
        report[key] = {
            name: _group_stats(scan_y[idx], scan_p[idx], threshold, n_boot, seed)
            for name, idx in sorted(groups.items())
        }
    report["tags"] = tag_summary(done)
    report["series"] = [
        {
            "path": str(r.item.path),
            "patient_id": r.item.patient_id,
            "region": r.item.region,
            "phase": r.item.phase,
            "label": r.item.label,
            "probability": r.prediction.probability,  # type: ignore[union-attr]
            "called": int(r.prediction.contrast),  # type: ignore[union-attr]
            "correct": r.prediction.contrast == r.item.contrast,  # type: ignore[union-attr]
            "slices_used": r.prediction.slices_used,  # type: ignore[union-attr]
            "contrast_bolus_agent": r.agent if r.has_header else None,
            "tag_status": tag_status(r.agent, r.prediction.contrast) if r.has_header else None,  # type: ignore[union-attr]
        }
        for r in done
    ]
    return report


def _mean_fraction(done: Sequence[Evaluated], threshold: float, contrast: bool) -> float | None:
    fractions = [
        float(np.mean(r.prediction.slice_probabilities >= threshold))  # type: ignore[union-attr]
        for r in done
        if r.item.contrast == contrast
    ]
    return float(np.mean(fractions)) if fractions else None
