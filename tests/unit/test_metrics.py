"""Evaluation metrics against values computed by hand on tiny arrays."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ivcontrast.training.metrics import (
    at_threshold,
    binary_report,
    bootstrap_indices,
    calibration,
    jsonable,
    percentile_ci,
    roc_auc,
    roc_curve,
    youden_threshold,
)

# The textbook example: negatives 0.1 and 0.4, positives 0.35 and 0.8.
Y = [0, 0, 1, 1]
P = [0.1, 0.4, 0.35, 0.8]


def test_auc_counts_ordered_pairs() -> None:
    # pairs (pos, neg): (0.35, 0.1) right, (0.35, 0.4) wrong, (0.8, 0.1) right, (0.8, 0.4) right
    assert roc_auc(Y, P) == pytest.approx(3 / 4)
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.9]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.9, 0.7, 0.2, 0.1]) == 0.0


def test_auc_counts_ties_as_half() -> None:
    # pairs: (0.6, 0.2) 1, (0.6, 0.6) 0.5, (0.9, 0.2) 1, (0.9, 0.6) 1 -> 3.5 / 4
    assert roc_auc([0, 0, 1, 1], [0.2, 0.6, 0.6, 0.9]) == pytest.approx(0.875)
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5


def test_auc_of_one_class_is_nan() -> None:
    assert math.isnan(roc_auc([1, 1, 1], [0.1, 0.2, 0.3]))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="2 labels but 3 scores"):
        roc_auc([0, 1], [0.1, 0.2, 0.3])


def test_roc_curve_points() -> None:
    fpr, tpr, thresholds = roc_curve(Y, P)
    assert thresholds.tolist() == [math.inf, 0.8, 0.4, 0.35, 0.1]
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    # The trapezoids under the curve give the AUC.
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(Y, P))


def test_statistics_at_a_threshold() -> None:
    y = [1, 1, 1, 0, 0, 0, 0, 1]
    p = [0.9, 0.6, 0.3, 0.7, 0.2, 0.1, 0.4, 0.5]
    # Called positive at >= 0.35: 0.9, 0.6, 0.7, 0.4, 0.5 -> TP 3, FP 2, TN 2, FN 1 (the 0.3).
    s = at_threshold(y, p, 0.35)
    assert (s.tp, s.fp, s.tn, s.fn) == (3, 2, 2, 1)
    assert s.sensitivity == pytest.approx(3 / 4)
    assert s.specificity == pytest.approx(2 / 4)
    assert s.ppv == pytest.approx(3 / 5)
    assert s.npv == pytest.approx(2 / 3)
    assert s.accuracy == pytest.approx(5 / 8)
    assert s.f1 == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    # A score equal to the threshold is called positive.
    assert at_threshold([1], [0.5], 0.5).tp == 1
    assert math.isnan(at_threshold([0, 0], [0.1, 0.9], 0.5).sensitivity)


def test_youden_threshold_by_hand() -> None:
    # Candidates 0.225 (sens 1, spec 0.5), 0.375 (0.5, 0.5), 0.6 (0.5, 1): J = 0.5 at 0.225 and
    # at 0.6; 0.6 sits in the wider gap (0.4..0.8 against 0.1..0.35).
    threshold, j = youden_threshold(Y, P)
    assert threshold == pytest.approx(0.6)
    assert j == pytest.approx(0.5)
    # Separable classes: the middle of the gap between them.
    threshold, j = youden_threshold([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.9])
    assert (threshold, j) == (pytest.approx(0.45), pytest.approx(1.0))
    with pytest.raises(ValueError, match="both classes"):
        youden_threshold([1, 1], [0.2, 0.3])


def test_calibration_bins_ece_and_brier_by_hand() -> None:
    p = [0.05, 0.15, 0.12, 0.95, 0.85, 0.55]
    y = [0, 0, 1, 1, 1, 0]
    cal = calibration(y, p, bins=10)
    counts = [b["count"] for b in cal["bins"]]
    assert counts == [1, 2, 0, 0, 0, 1, 0, 0, 1, 1]
    second = cal["bins"][1]
    assert second["mean_probability"] == pytest.approx(0.135)
    assert second["observed_rate"] == pytest.approx(0.5)
    # ECE = (1 x 0.05 + 2 x 0.365 + 1 x 0.55 + 1 x 0.15 + 1 x 0.05) / 6
    assert cal["ece"] == pytest.approx(1.53 / 6)
    # Brier = (0.05^2 + 0.15^2 + 0.88^2 + 0.05^2 + 0.15^2 + 0.55^2) / 6
    assert cal["brier"] == pytest.approx(1.1269 / 6)
    # Bin edges: [low, high), the last bin closed; 1.0 and 0.1 land where they should.
    edges = calibration([1, 0], [1.0, 0.1], bins=10)["bins"]
    assert edges[9]["count"] == 1 and edges[1]["count"] == 1
    with pytest.raises(ValueError, match="probabilities"):
        calibration([0], [1.5])


def test_bootstrap_is_seeded_and_resamples_whole_groups() -> None:
    a = bootstrap_indices(10, 5, seed=3)
    b = bootstrap_indices(10, 5, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(
        np.array_equal(x, y) for x, y in zip(a, bootstrap_indices(10, 5, seed=4), strict=True)
    )
    groups = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])
    for idx in bootstrap_indices(10, 50, seed=0, groups=groups):
        drawn = groups[idx]
        for g, size in ((0, 3), (1, 2), (2, 1), (3, 4)):
            assert np.sum(drawn == g) % size == 0  # a group comes whole or not at all
        # Each resample draws as many groups as there are (4), however many cases that makes.
        assert sum(np.sum(drawn == g) // size for g, size in ((0, 3), (1, 2), (2, 1), (3, 4))) == 4


def test_percentile_ci() -> None:
    assert percentile_ci(np.arange(101.0)) == (pytest.approx(2.5), pytest.approx(97.5))
    low, high = percentile_ci([])
    assert math.isnan(low) and math.isnan(high)


def test_binary_report_intervals() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 100)
    p = np.clip(np.where(y == 1, 0.7, 0.3) + rng.normal(0, 0.2, y.size), 0, 1)
    report = binary_report(y, p, threshold=0.5, n_boot=1000, seed=0)
    assert report["n"] == 200 and report["positives"] == 100
    low, high = report["ci95"]["auc"]
    assert low < report["auc"] < high
    assert 0.8 < low and high < 1.0
    acc_low, acc_high = report["ci95"]["accuracy"]
    assert acc_low < report["at_threshold"]["accuracy"] < acc_high
    assert report["bootstrap"] == {
        "samples": 1000,
        "seed": 0,
        "resampled": "cases",
        "single_class_samples": 0,
    }
    assert report == binary_report(y, p, threshold=0.5, n_boot=1000, seed=0)  # seeded
    # Perfect separation: every resample has AUC 1.
    perfect = binary_report([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 0.5, n_boot=200)
    assert perfect["ci95"]["auc"] == [1.0, 1.0]
    # Two cases: about half of the resamples hold one class only; they are counted, not used.
    tiny = binary_report([0, 1], [0.2, 0.8], 0.5, n_boot=1000, seed=1)
    assert 400 < tiny["bootstrap"]["single_class_samples"] < 600


def test_jsonable_makes_strict_json() -> None:
    value = {"a": math.nan, "b": [np.float64(1.5), np.int64(2), math.inf], "c": np.array([0.5])}
    text = json.dumps(jsonable(value), allow_nan=False)
    assert json.loads(text) == {"a": None, "b": [1.5, 2, None], "c": [0.5]}
