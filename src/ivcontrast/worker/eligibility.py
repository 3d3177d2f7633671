"""Which complete series are worth classifying, and why the others are skipped.

A pure function of the header fields the listener indexed; no file is opened. The
classifier sees only CT Image Storage series of original axial images with enough slices
and one consistent geometry; everything else is skipped with a reason a person can read.

``skip_reason`` reads any object with the attributes of ``EligibilityHeader``: the store's
``Instance`` rows (the worker's check job), or ``store.values.InstanceHeader`` as
``scp.header`` reads it from a file (``ivcontrast classify``). A new criterion adds its
attribute to the Protocol, and nothing is copied between header types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from pydicom.uid import UID

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
LOCALIZER_WORDS = ("scout", "topogram", "localizer", "localiser", "surview", "scanogram", "pilot")

# Axial enough: the slice normal within ~45 degrees of the body axis, so gantry tilt passes
# and sagittal or coronal reformats do not.
MIN_AXIAL_COSINE = 0.7
ORIENTATION_TOLERANCE = 1e-3
POSITION_TOLERANCE_MM = 0.01


class EligibilityHeader(Protocol):
    """The header attributes of one instance that eligibility reads.

    Multi-valued attributes are joined by backslash, as DICOM encodes them. Read-only
    properties, so that frozen dataclasses and ORM rows both satisfy it.
    """

    @property
    def sop_class_uid(self) -> str: ...
    @property
    def image_type(self) -> str | None: ...
    @property
    def rows(self) -> int | None: ...
    @property
    def columns(self) -> int | None: ...
    @property
    def number_of_frames(self) -> int | None: ...
    @property
    def pixel_spacing(self) -> str | None: ...
    @property
    def image_position(self) -> str | None: ...
    @property
    def image_orientation(self) -> str | None: ...


@dataclass(frozen=True)
class EligibilityRule:
    min_slices: int
    classify_derived: bool = False


def skip_reason(
    modality: str | None,
    series_description: str | None,
    instances: Sequence[EligibilityHeader],
    rule: EligibilityRule,
) -> str | None:
    """None if the series should be classified, else why it is skipped."""
    if modality != "CT":
        return f"not CT (modality {modality or 'missing'})"
    classes = {i.sop_class_uid for i in instances}
    if classes - {CT_IMAGE_STORAGE}:
        if classes == {ENHANCED_CT_IMAGE_STORAGE}:
            return "Enhanced CT (multi-frame) is not supported by this version"
        names = ", ".join(sorted(UID(c).name for c in classes - {CT_IMAGE_STORAGE}))
        return f"not CT Image Storage ({names})"
    reason = _image_type_problem(instances, series_description, rule)
    if reason is not None:
        return reason
    if len(instances) < rule.min_slices:
        return f"too few slices ({len(instances)} < {rule.min_slices})"
    return _geometry_problem(instances)


def _image_type_problem(
    instances: Sequence[EligibilityHeader], series_description: str | None, rule: EligibilityRule
) -> str | None:
    """Localizers, and (unless ``rule.classify_derived``) derived or secondary images."""
    image_types = {(i.image_type or "").upper() for i in instances}
    values = {v for t in image_types for v in t.split("\\")}
    description = (series_description or "").lower()
    if "LOCALIZER" in values or any(word in description for word in LOCALIZER_WORDS):
        return "localizer/scout"
    if not rule.classify_derived:
        derived = sorted(t for t in image_types if _is_derived(t.split("\\")))
        if derived:
            return f"derived/secondary images (ImageType {derived[0]})"
    return None


# ImageType values (3 and on) and their kin that mark reformats and projections.
REFORMAT_VALUES = frozenset(
    {"MIP", "MINIP", "MNIP", "MPR", "CPR", "REFORMATTED", "PROJECTION IMAGE", "VOLUME", "VR", "3D"}
)


def _is_derived(image_type: list[str]) -> bool:
    """ImageType value 2 SECONDARY, value 1 DERIVED (PS3.3 C.7.6.1.1.2), or a reformat.

    DERIVED\\PRIMARY\\AXIAL is classified: PET/CT attenuation-correction CT and some
    iteratively reconstructed axial series are marked so, and they are axial slices of the
    patient like any other. DERIVED\\SECONDARY (reformats, screen captures), MIP/MPR and
    other projections are not.
    """
    if "SECONDARY" in image_type[1:2] or REFORMAT_VALUES & set(image_type[2:]):
        return True
    if image_type[:1] == ["DERIVED"]:
        return image_type[1:3] != ["PRIMARY", "AXIAL"]
    return False


def _geometry_problem(instances: Sequence[EligibilityHeader]) -> str | None:
    if any((i.number_of_frames or 1) > 1 for i in instances):
        return "inconsistent geometry: multi-frame images in a CT Image Storage series"
    if len({(i.rows, i.columns) for i in instances}) > 1:
        return "inconsistent geometry: more than one image matrix size"
    if len({i.pixel_spacing for i in instances}) > 1:
        return "inconsistent geometry: more than one pixel spacing"
    try:
        orientations = np.array([_floats(i.image_orientation, 6) for i in instances])
        positions = np.array([_floats(i.image_position, 3) for i in instances])
    except ValueError as exc:
        return f"inconsistent geometry: {exc}"
    # float() reads "nan" and "inf": such a slice has no place, and NaN compares false with
    # every tolerance below, so it would pass them all.
    if not np.isfinite(positions).all():
        return "inconsistent geometry: non-finite ImagePositionPatient"
    if not np.isfinite(orientations).all():
        return "inconsistent geometry: non-finite ImageOrientationPatient"
    if np.abs(orientations - orientations[0]).max() > ORIENTATION_TOLERANCE:
        return "inconsistent geometry: more than one ImageOrientationPatient"
    normal = np.cross(orientations[0][:3], orientations[0][3:])
    norm = float(np.linalg.norm(normal))
    if norm < 0.5:
        return "inconsistent geometry: ImageOrientationPatient is not two orthogonal unit vectors"
    normal /= norm
    if abs(normal[2]) < MIN_AXIAL_COSINE:
        return "not axial (sagittal or coronal images)"
    along = np.sort(positions @ normal)
    if np.any(np.diff(along) < POSITION_TOLERANCE_MM):
        return "inconsistent geometry: several images at the same slice position"
    return None


def _floats(text: str | None, count: int) -> list[float]:
    if not text:
        raise ValueError("missing ImagePositionPatient or ImageOrientationPatient")
    values = [float(v) for v in text.split("\\")]
    if len(values) != count:
        raise ValueError(f"expected {count} values, got {text!r}")
    return values
