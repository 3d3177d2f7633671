"""DICOM headers and pixel encoding for synthetic series.

The header is a valid CT Image IOD (checked with dicom3tools' ``dciodvfy`` in the tests)
with the tags real scanners write. Series-constant elements are computed once; each slice
gets fresh DataElement objects, so datasets handed to callers never share mutable state.
Nothing depends on the clock: a fixed seed gives identical bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID

from ivcontrast import __version__
from ivcontrast.synth.identity import uid
from ivcontrast.synth.spec import TRANSFER_SYNTAXES, SeriesPlan

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SOP_CLASSES = {"ct": CT_IMAGE_STORAGE, "sc": SC_IMAGE_STORAGE, "mr": MR_IMAGE_STORAGE}
IMPLEMENTATION_UID = uid("implementation", "ivcontrast")
IMPLEMENTATION_VERSION = f"IVCONTRAST_{__version__}"[:16]

Element = tuple[int, str, Any]


def _fmt(value: float) -> str:
    """A decimal string (DS) of at most 16 characters."""
    text = f"{value:.6g}"
    return text if len(text) <= 16 else f"{value:.4e}"


def pixel_range(plan: SeriesPlan) -> tuple[int, int]:
    """The stored values a slice may use (padding excepted)."""
    if plan.sop_class == "mr":
        return 0, 4095
    lo_hu, hi_hu = -1024, 3071
    lo, hi = lo_hu - plan.rescale_intercept, hi_hu - plan.rescale_intercept
    if not plan.signed:
        lo, hi = max(lo, 0), min(hi, (1 << plan.bits_stored) - 1)
    return lo, hi


def padding_value(plan: SeriesPlan) -> int | None:
    """Stored value outside the reconstruction circle, when the scanner marks it."""
    return -2000 if plan.fov_circle == "padding" else None


PHASE_WORDS = {
    "none": "native",
    "arterial": "arterial",
    "portal_venous": "venous",
    "delayed": "delayed",
}
# An MR series (not CT at all) for the eligibility cases: spin echo, 1.5 T.
MR_ELEMENTS: tuple[Element, ...] = (
    (0x00180020, "CS", "SE"),
    (0x00180021, "CS", "NONE"),
    (0x00180022, "CS", ""),
    (0x00180023, "CS", "2D"),
    (0x00180080, "DS", "500"),
    (0x00180081, "DS", "15"),
    (0x00180091, "IS", "1"),
    (0x00180087, "DS", "1.5"),
    (0x00180024, "SH", "se2d1"),
    (0x00180025, "CS", "N"),
    (0x00180085, "SH", "1H"),
)


def series_elements(plan: SeriesPlan, geometry: dict[str, Any]) -> list[Element]:
    """The elements every slice of the series shares, in tag order once sorted."""
    mr = plan.sop_class == "mr"
    e = _common_elements(plan, geometry)
    e.append((0x00200037, "DS", [_fmt(v) for v in geometry["orientation"]]))
    if not mr:
        e += _display_elements(plan)
    if plan.sop_class in ("ct", "sc"):
        e += _acquisition_elements(plan)
    if plan.sop_class == "sc":
        e += [(0x00080064, "CS", "WSD"), (0x00200020, "CS", ["L", "P"])]
    if mr:
        e += list(MR_ELEMENTS)
    if plan.tag_value is not None and not mr:
        e.append((0x00180010, "LO", plan.tag_value))
        if plan.tag_value and plan.tag_value not in ("N", "NO", "n"):
            e.append((0x00181040, "LO", "IV"))
    pad = padding_value(plan)
    if pad is not None:
        e.append((0x00280120, "SS" if plan.signed else "US", pad))
    return e


def _common_elements(plan: SeriesPlan, geometry: dict[str, Any]) -> list[Element]:
    """Patient, study, series, equipment and image pixel elements."""
    mr = plan.sop_class == "mr"
    pos = plan.patient_position
    body_part = "CHEST" if plan.region == "chest" else "HEADNECK"
    desc = PHASE_WORDS[plan.phase]
    series_desc = (
        "Topogram"
        if plan.kind == "localizer"
        else f"{'Thorax' if plan.region == 'chest' else 'Neck'} {desc} {plan.thickness:g}mm {plan.kernel}"
    )
    return [
        (0x00080005, "CS", "ISO_IR 100"),
        (0x00080008, "CS", list(plan.image_type)),
        (0x00080012, "DA", plan.study_date),
        (0x00080013, "TM", plan.series_time),
        (0x00080016, "UI", SOP_CLASSES[plan.sop_class]),
        (0x00080020, "DA", plan.study_date),
        (0x00080021, "DA", plan.study_date),
        (0x00080022, "DA", plan.study_date),
        (0x00080023, "DA", plan.study_date),
        (0x00080030, "TM", plan.study_time),
        (0x00080031, "TM", plan.series_time),
        (0x00080032, "TM", plan.series_time),
        (0x00080050, "SH", plan.accession),
        (0x00080060, "CS", plan.modality),
        (0x00080070, "LO", plan.manufacturer),
        (0x00080080, "LO", "SYNTHETIC HOSPITAL"),
        (0x00080090, "PN", ""),
        (0x00081010, "SH", "SYNTHCT1"),
        (0x00081030, "LO", "CT Thorax" if plan.region == "chest" else "CT Neck"),
        (0x0008103E, "LO", series_desc[:64]),
        (0x00081090, "LO", plan.model),
        (0x00100010, "PN", plan.patient_name),
        (0x00100020, "LO", plan.patient_id),
        (0x00100030, "DA", plan.birth_date),
        (0x00100040, "CS", plan.patient.get("sex", "O")),
        (0x00101010, "AS", f"{int(plan.patient.get('age', 50)):03d}Y"),
        (0x00180015, "CS", body_part),
        (0x00180050, "DS", _fmt(plan.thickness)),
        (0x00181020, "LO", "synth " + __version__),
        (0x00181030, "LO", f"{body_part} {desc}".upper()),
        (0x00185100, "CS", pos),
        (0x0020000D, "UI", plan.study_uid),
        (0x0020000E, "UI", plan.series_uid),
        (0x00200010, "SH", plan.accession[-8:]),
        (0x00200011, "IS", str(plan.series_number)),
        (0x00200012, "IS", "1"),
        (0x00200052, "UI", plan.frame_uid),
        (0x00201040, "LO", ""),
        (0x00280002, "US", 1),
        (0x00280004, "CS", "MONOCHROME2"),
        (0x00280010, "US", geometry["rows"]),
        (0x00280011, "US", geometry["columns"]),
        (0x00280030, "DS", [_fmt(v) for v in geometry["spacing"]]),
        (0x00280100, "US", 16),
        (0x00280101, "US", plan.bits_stored if not mr else 12),
        (0x00280102, "US", (plan.bits_stored if not mr else 12) - 1),
        (0x00280103, "US", 1 if (plan.signed and not mr) else 0),
    ]


def _display_elements(plan: SeriesPlan) -> list[Element]:
    """Window and rescale (HU for axial CT, raw values for a topogram)."""
    window = plan.window if plan.kind != "localizer" else (2048.0, 4096.0)
    e: list[Element] = [
        (0x00281050, "DS", _fmt(window[0])),
        (0x00281051, "DS", _fmt(window[1])),
        (0x00281052, "DS", _fmt(plan.rescale_intercept if plan.kind != "localizer" else 0)),
        (0x00281053, "DS", "1"),
    ]
    if plan.kind != "localizer":
        e.append((0x00281054, "LO", "HU"))
    return e


def _acquisition_elements(plan: SeriesPlan) -> list[Element]:
    """CT acquisition: kV, mAs, field of view, gantry tilt, kernel, scan mode."""
    return [
        (0x00180060, "DS", str(plan.kvp)),
        (0x00180090, "DS", "500"),
        (0x00181100, "DS", _fmt(round(plan.fov_mm, 2))),
        (0x00181120, "DS", _fmt(plan.tilt)),
        (0x00181130, "DS", _fmt(round(150.0 + plan.centre_y * 0.5, 1))),
        (0x00181140, "CS", "CW"),
        (0x00181150, "IS", "500"),
        (0x00181151, "IS", str(int(plan.mas * 1.6))),
        (0x00181152, "IS", str(plan.mas)),
        (0x00181160, "SH", "BODY FILTER" if plan.manufacturer.startswith("GE") else "FLAT"),
        (0x00181210, "SH", plan.kernel),
        (0x00180022, "CS", "HELICAL_CT" if plan.kind != "localizer" else "SCOUT_MODE"),
    ]


def slice_dataset(
    plan: SeriesPlan,
    constant: Sequence[Element],
    instance: int,
    position: Sequence[float],
    slice_location: float,
    acquisition_seconds: float,
) -> Dataset:
    """A new dataset for one slice, without pixel data."""
    sop_uid = uid("sop", plan.series_uid, instance)
    elements = (DataElement(tag, vr, _copy(v)) for tag, vr, v in constant)
    ds = Dataset({el.tag: el for el in elements})
    t = _time(plan.series_time, acquisition_seconds)
    for tag, vr, value in (
        (0x00080018, "UI", sop_uid),
        (0x00080033, "TM", t),
        (0x00080032, "TM", t),
        (0x00200013, "IS", str(instance)),
        (0x00200032, "DS", [_fmt(round(v, 4)) for v in position]),
    ):
        ds[tag] = DataElement(tag, vr, value)
    if plan.kind != "localizer":
        ds[0x00201041] = DataElement(0x00201041, "DS", _fmt(round(slice_location, 4)))
        if plan.sop_class != "mr":
            ds[0x00180088] = DataElement(0x00180088, "DS", _fmt(plan.spacing))
    if plan.sop_class == "ct":
        ds[0x00083010] = DataElement(0x00083010, "UI", uid("irradiation", plan.series_uid))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(SOP_CLASSES[plan.sop_class])
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = UID(TRANSFER_SYNTAXES["explicit"])
    meta.ImplementationClassUID = UID(IMPLEMENTATION_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds.file_meta = meta
    return ds


def set_pixels(ds: Dataset, raw: np.ndarray, plan: SeriesPlan) -> None:
    """Attach the stored values, uncompressed or in the plan's transfer syntax."""
    signed = plan.signed and plan.sop_class != "mr"
    arr = np.ascontiguousarray(raw.astype(np.int16 if signed else np.uint16))
    syntax = TRANSFER_SYNTAXES[plan.transfer_syntax]
    if plan.transfer_syntax in ("explicit", "implicit"):
        ds.file_meta.TransferSyntaxUID = UID(syntax)
        ds[0x7FE00010] = DataElement(0x7FE00010, "OW", arr.tobytes())
        return
    plugin = "pylibjpeg" if plan.transfer_syntax in ("rle", "jpeg2000") else ""
    ds.compress(UID(syntax), arr, encoding_plugin=plugin)


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def _time(hhmmss: str, seconds: float) -> str:
    base = int(hhmmss[:2]) * 3600 + int(hhmmss[2:4]) * 60 + int(hhmmss[4:6])
    total = (base + seconds) % 86400
    whole = int(total)
    frac = round((total - whole) * 1e6) % 1_000_000
    return f"{whole // 3600:02d}{whole // 60 % 60:02d}{whole % 60:02d}.{frac:06d}"


__all__ = ["pixel_range", "series_elements", "set_pixels", "slice_dataset"]
