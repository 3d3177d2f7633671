from __future__ import annotations

import dataclasses

import pytest

from ivcontrast.store.values import InstanceHeader
from ivcontrast.worker.eligibility import (
    CT_IMAGE_STORAGE,
    ENHANCED_CT_IMAGE_STORAGE,
    EligibilityRule,
    skip_reason,
)

RULE = EligibilityRule(min_slices=10)
AXIAL = "1\\0\\0\\0\\1\\0"


def axial_series(n: int = 20, **overrides: object) -> list[InstanceHeader]:
    # The store's header type, as ``ivcontrast classify`` passes it; the worker passes
    # ``Instance`` rows (test_sweep_and_check): both satisfy ``EligibilityHeader``.
    base = InstanceHeader(
        sop_class_uid=CT_IMAGE_STORAGE,
        sop_instance_uid="1.2.3.4",
        study_uid="1.2.3",
        series_uid="1.2.3.4.5",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        image_type="ORIGINAL\\PRIMARY\\AXIAL",
        rows=512,
        columns=512,
        number_of_frames=None,
        pixel_spacing="0.7\\0.7",
        image_position=None,
        image_orientation=AXIAL,
    )
    return [
        dataclasses.replace(base, image_position=f"-180\\-180\\{-2.5 * k}", **overrides)  # type: ignore[arg-type]
        for k in range(n)
    ]


def test_axial_ct_is_eligible() -> None:
    assert skip_reason("CT", "Neck w/ contrast", axial_series(), RULE) is None


def test_gantry_tilt_is_still_axial() -> None:
    tilted = "1\\0\\0\\0\\0.9063\\-0.4226"  # 25 degrees
    assert skip_reason("CT", None, axial_series(image_orientation=tilted), RULE) is None


@pytest.mark.parametrize(
    ("modality", "description", "series", "expected"),
    [
        ("MR", None, axial_series(), "not CT (modality MR)"),
        (None, None, axial_series(), "not CT (modality missing)"),
        (
            "CT",
            None,
            axial_series(sop_class_uid="1.2.840.10008.5.1.4.1.1.7"),
            "not CT Image Storage (Secondary Capture Image Storage)",
        ),
        (
            "CT",
            None,
            axial_series(sop_class_uid=ENHANCED_CT_IMAGE_STORAGE),
            "Enhanced CT (multi-frame) is not supported by this version",
        ),
        ("CT", None, axial_series(3, image_type="ORIGINAL\\PRIMARY\\LOCALIZER"), "localizer/scout"),
        ("CT", "Topogram 0.6 T20f", axial_series(), "localizer/scout"),
        (
            "CT",
            "MPR",
            axial_series(image_type="DERIVED\\SECONDARY\\MPR"),
            "derived/secondary images (ImageType DERIVED\\SECONDARY\\MPR)",
        ),
        ("CT", None, axial_series(5), "too few slices (5 < 10)"),
        (
            "CT",
            None,
            axial_series(image_orientation="0\\1\\0\\0\\0\\-1"),
            "not axial (sagittal or coronal images)",
        ),
        (
            "CT",
            None,
            axial_series(image_orientation=None),
            "inconsistent geometry: missing ImagePositionPatient or ImageOrientationPatient",
        ),
    ],
)
def test_skip_reasons(
    modality: str | None, description: str | None, series: list[InstanceHeader], expected: str
) -> None:
    assert skip_reason(modality, description, series, RULE) == expected


def test_mixed_matrix_and_duplicate_positions_are_inconsistent() -> None:
    series = axial_series()
    series[3] = dataclasses.replace(series[3], rows=256, columns=256)
    assert (
        skip_reason("CT", None, series, RULE)
        == "inconsistent geometry: more than one image matrix size"
    )
    series = axial_series()
    series[4] = dataclasses.replace(series[4], image_position=series[5].image_position)
    assert (
        skip_reason("CT", None, series, RULE)
        == "inconsistent geometry: several images at the same slice position"
    )
    series = axial_series()
    series[0] = dataclasses.replace(series[0], image_orientation="1\\0\\0\\0\\0.8\\0.6")
    assert (
        skip_reason("CT", None, series, RULE)
        == "inconsistent geometry: more than one ImageOrientationPatient"
    )


def test_derived_primary_axial_is_classified() -> None:
    # PET/CT attenuation CT (Siemens: DERIVED\PRIMARY\AXIAL\CT_SOM5 SPI) is axial slices.
    for image_type in ("DERIVED\\PRIMARY\\AXIAL", "DERIVED\\PRIMARY\\AXIAL\\CT_SOM5 SPI"):
        assert skip_reason("CT", None, axial_series(image_type=image_type), RULE) is None


def test_reformats_and_secondary_images_are_skipped_with_their_image_type() -> None:
    for image_type in (
        "DERIVED\\SECONDARY\\AXIAL",
        "DERIVED\\SECONDARY\\REFORMATTED",
        "DERIVED\\PRIMARY\\AXIAL\\MIP",
        "DERIVED\\PRIMARY\\CORONAL",
        "ORIGINAL\\SECONDARY\\AXIAL",
        "ORIGINAL\\PRIMARY\\MPR",
    ):
        reason = skip_reason("CT", None, axial_series(image_type=image_type), RULE)
        assert reason == f"derived/secondary images (ImageType {image_type})", image_type
        assert (
            skip_reason(
                "CT",
                None,
                axial_series(image_type=image_type),
                EligibilityRule(10, classify_derived=True),
            )
            is None
        )
    localizer = axial_series(image_type="ORIGINAL\\PRIMARY\\LOCALIZER")
    assert skip_reason("CT", None, localizer, RULE) == "localizer/scout"


@pytest.mark.parametrize("bad", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_non_finite_positions_are_skipped(bad: str) -> None:
    # NaN compares false with every tolerance, so it used to pass as a valid geometry.
    series = axial_series()
    series[3] = dataclasses.replace(series[3], image_position=f"-180\\{bad}\\-7.5")
    reason = skip_reason("CT", None, series, RULE)
    assert reason == "inconsistent geometry: non-finite ImagePositionPatient"


def test_non_finite_orientation_is_skipped() -> None:
    series = axial_series(image_orientation="1\\0\\0\\0\\1\\nan")
    reason = skip_reason("CT", None, series, RULE)
    assert reason == "inconsistent geometry: non-finite ImageOrientationPatient"
