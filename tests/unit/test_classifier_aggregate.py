"""Scan-level aggregation of slice probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from ivcontrast.classifier.aggregate import Aggregation, aggregate, sigmoid


def test_mean_and_topk_by_hand() -> None:
    p = np.array([0.1, 0.9, 0.4, 0.8, 0.2])
    assert aggregate(p, Aggregation("mean")) == pytest.approx(0.48)
    assert aggregate(p, Aggregation("topk_mean", k=2)) == pytest.approx(0.85)
    assert aggregate(p, Aggregation("topk_mean", k=10)) == pytest.approx(0.48)
    assert aggregate(p[::-1], Aggregation("topk_mean", k=3)) == pytest.approx(0.7)


def test_topk_ignores_how_many_slices_show_no_vessels() -> None:
    vessels = np.full(8, 0.9)
    for extra in (0, 10, 100):
        p = np.concatenate([vessels, np.full(extra, 0.05)])
        assert aggregate(p, Aggregation("topk_mean", k=8)) == pytest.approx(0.9)
    diluted = np.concatenate([vessels, np.full(100, 0.05)])
    assert aggregate(diluted, Aggregation("mean")) < 0.2


def test_validation_and_serialisation() -> None:
    with pytest.raises(ValueError, match="expected one of"):
        Aggregation("median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k 0 < 1"):
        Aggregation("topk_mean", k=0)
    with pytest.raises(ValueError, match="no slice probabilities"):
        aggregate(np.array([]), Aggregation())
    agg = Aggregation("topk_mean", k=5)
    assert Aggregation.from_dict(agg.to_dict()) == agg
    assert str(agg) == "topk_mean(k=5)" and str(Aggregation("mean")) == "mean"
    with pytest.raises(ValueError, match="unknown aggregation parameters: q"):
        Aggregation.from_dict({"method": "mean", "q": 1})


def test_sigmoid_is_stable() -> None:
    out = sigmoid(np.array([-1000.0, -2.0, 0.0, 2.0, 1000.0]))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, [0.0, 0.11920292, 0.5, 0.88079708, 1.0], atol=1e-8)
