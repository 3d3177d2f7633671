"""The physics second opinion on phantoms with known vessel HU, and the review decision."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ivcontrast.classifier.physics import BloodPool, PhysicsParams, assess, assess_volume
from ivcontrast.classifier.review import ReviewPolicy, decide, physics_says
from ivcontrast.classifier.sources import open_source
from ivcontrast.classifier.volume import RememberingSource, Volume
from ivcontrast.synth import SeriesSpec, SyntheticSeries
from ivcontrast.vocabulary import Label

PARAMS = PhysicsParams()


def phantom(tmp_path: Path, **fields: object) -> Path:
    spec = SeriesSpec(matrix=256, slices=16, thickness=5.0, noise=12.0, **fields)  # type: ignore[arg-type]
    folder = tmp_path / "series"
    SyntheticSeries(spec).write(folder)
    return folder


def pool(found: bool, hu: float | None = None) -> BloodPool:
    if not found:
        return BloodPool.not_found("nothing", PARAMS)
    assert hu is not None
    return BloodPool(
        True, hu >= 125, "chest vessel (aorta or heart)", hu, 3, 10.0, 50, 60, 9.0, 125.0, "x", True
    )


@pytest.mark.parametrize(
    ("phase", "calcium", "kvp"),
    [("none", "heavy", 100), ("none", "none", 120), ("arterial", "mild", 120)],
)
def test_chest_aorta_hu_calcified_walls_excluded(
    tmp_path: Path, phase: str, calcium: str, kvp: int
) -> None:
    folder = phantom(
        tmp_path,
        region="chest",
        phase=phase,
        seed=4242,
        vessel_calcium=calcium,
        kvp=kvp,
        bolus="normal" if phase != "none" else None,
        pet_ct=False,
    )
    result = assess(open_source(folder), PARAMS)
    assert result.found, result.reason
    assert result.hu is not None and result.slice_index is not None
    if phase == "none":
        # unenhanced blood ~40 HU; the >700 HU calcified rims must not raise it
        assert result.hu < 100 and result.contrast is False, result
    else:
        assert result.hu > 180 and result.contrast is True, result
    assert 0 <= result.slice_index < 16
    assert result.row is not None and result.col is not None


def test_unenhanced_head_with_intracranial_calcium_is_not_enhanced(tmp_path: Path) -> None:
    folder = phantom(
        tmp_path,
        region="headneck",
        phase="none",
        seed=77,
        brain=True,
        intracranial_calcium="choroid_plexus+pineal+falx",
        kvp=100,
    )
    result = assess(open_source(folder), PARAMS)
    # Found or not, calcium (> 150 HU, not blood) must never read as an enhanced blood pool.
    assert result.contrast is not True, result


def test_no_body_gives_not_found_with_a_reason() -> None:
    air = Volume.axial(np.full((6, 64, 64), -1000, np.int16), (2.0, 2.0), np.arange(6) * 5.0)
    result = assess(air, PARAMS)
    assert not result.found and result.hu is None and result.contrast is None
    assert "no blood pool found" in result.reason
    assert assess_volume(np.zeros((0, 4, 4)), (1.0, 1.0), [], [], PARAMS).reason


def test_coarse_pixels_are_not_measured() -> None:
    hu = np.full((6, 64, 64), 40, np.int16)
    coarse = Volume.axial(hu, (3.5, 3.5), np.arange(6) * 5.0)
    result = assess(coarse, PARAMS)
    assert not result.found and result.hu is None
    assert "3.5 mm are too coarse" in result.reason


def test_remembering_source_decodes_each_slice_once() -> None:
    calls: list[list[int]] = []
    volume = Volume.axial(np.zeros((5, 8, 8), np.int16), (1.0, 1.0), np.arange(5) * 2.0)

    class Counting:
        geometry = volume.geometry
        description = "counting"

        def read(self, indices: list[int]) -> np.ndarray:
            calls.append(list(indices))
            return volume.read(indices)

    source = RememberingSource(Counting())
    assert source.read([1, 3]).shape == (2, 8, 8)
    assert source.read([3, 1, 4]).shape == (3, 8, 8)
    assert calls == [[1, 3], [4]]


def test_physics_overrules_only_when_clear() -> None:
    policy = ReviewPolicy(band=0.0, physics_margin_hu=25.0)
    assert physics_says(pool(True, 40.0), 25.0) is False  # a trunk vessel rules contrast out
    neck = dataclasses.replace(pool(True, 40.0), structure="neck vessel", rules_out=False)
    assert physics_says(neck, 25.0) is None  # a small vessel may be missed: no rule-out
    assert physics_says(dataclasses.replace(neck, hu=300.0), 25.0) is True
    assert physics_says(pool(True, 200.0), 25.0) is True
    assert physics_says(pool(True, 110.0), 25.0) is None  # too close to 125 HU
    assert physics_says(pool(False), 25.0) is None
    assert physics_says(None, 25.0) is None
    agree = decide(0.9, 0.5, pool(True, 250.0), policy)
    assert (agree.label, agree.network_label, agree.reasons) == (Label.CONTRAST, Label.CONTRAST, ())
    disagree = decide(0.9, 0.5, pool(True, 40.0), policy)
    assert disagree.label is Label.REVIEW and disagree.network_label is Label.CONTRAST
    assert "40 HU" in disagree.reasons[0]
    assert decide(0.1, 0.5, pool(True, 300.0), policy).label is Label.REVIEW
    assert decide(0.9, 0.5, pool(True, 115.0), policy).label is Label.CONTRAST
    assert decide(0.9, 0.5, pool(False), policy).label is Label.CONTRAST


def test_probability_in_the_band_is_reviewed() -> None:
    policy = ReviewPolicy(band=0.1)
    assert decide(0.55, 0.5, None, policy).label is Label.REVIEW
    assert decide(0.45, 0.5, None, policy).network_label is Label.NO_CONTRAST
    assert decide(0.61, 0.5, None, policy).label is Label.CONTRAST
    assert decide(0.39, 0.5, None, policy).label is Label.NO_CONTRAST
    assert decide(0.55, 0.5, None, ReviewPolicy(band=0.0)).label is Label.CONTRAST
