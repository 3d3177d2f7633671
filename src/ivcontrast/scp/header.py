"""Read the header of a received dataset without touching its pixel data.

The C-STORE handler gets the dataset as the peer encoded it. Only the elements up to the
end of group 0028 are parsed (UIDs, geometry, image type...): private groups after it and
the pixel data are never read, let alone decoded.

The dataset must be encoded as its presentation context's transfer syntax says: the first
element's encoding (explicit VR or not) is checked before anything else, since pydicom
would otherwise switch silently and the file would be stored with file meta that lies.
"""

from __future__ import annotations

import io
import zlib
from pathlib import Path
from typing import Any, BinaryIO

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
)
from pydicom.valuerep import VR

from ivcontrast.store.values import InstanceHeader

LAST_TAG = 0x0028FFFF  # the last element the store needs lives in group 0028
INFLATE_LIMIT = 1 << 20
UNDEFINED_LENGTH = 0xFFFFFFFF  # a deflated header is found in the first MiB of inflated bytes


class HeaderError(ValueError):
    """The dataset cannot be parsed; the message says why (no patient data in it)."""


# Two-letter VRs as they appear in an explicit VR element header.
_VR_CODES = frozenset(v.value.encode("ascii") for v in VR if len(v.value) == 2)


def _stop(tag: BaseTag, vr: str | None, length: int) -> bool:
    return tag > LAST_TAG


def check_vr_encoding(head: bytes, implicit: bool) -> None:
    """Raise HeaderError when the first element is not encoded as ``implicit`` says.

    Bytes 4-5 of an explicit VR element are its VR; in implicit VR they are the low half of
    the value length, which reads as two capital letters only for a first element of 16 KiB
    or more (pydicom's own test).
    """
    if len(head) < 6:
        return  # too short for either; the parse says why
    explicit = head[4:6] in _VR_CODES
    if explicit and implicit:
        raise HeaderError("dataset is explicit VR but the presentation context is implicit VR")
    if not explicit and not implicit:
        raise HeaderError("dataset is implicit VR but the presentation context is explicit VR")


def read_header(data: BinaryIO, transfer_syntax: str) -> Dataset:
    """Parse the elements up to group 0028 of an encoded dataset (no file meta)."""
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        data.seek(0)
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            data = io.BytesIO(inflater.decompress(data.read(), INFLATE_LIMIT))
        except zlib.error as exc:
            raise HeaderError(f"deflated dataset cannot be inflated: {exc}") from None
    implicit = transfer_syntax == ImplicitVRLittleEndian
    little = transfer_syntax != ExplicitVRBigEndian
    data.seek(0)
    check_vr_encoding(data.read(6), implicit)
    data.seek(0)
    try:
        # The element walk is eager (so structural errors surface here); values are
        # converted only when read, by instance_header, which tolerates bad optional ones.
        ds = read_dataset(data, implicit, little, stop_when=_stop)
    except Exception as exc:  # pydicom raises many types on bad input
        raise HeaderError(f"dataset header cannot be parsed: {type(exc).__name__}: {exc}") from None
    if len(ds) == 0:
        raise HeaderError("dataset is empty")
    end = data.seek(0, io.SEEK_END)
    for elem in ds.elements():
        # pydicom reads a value that runs past the end of the data without complaint.
        if isinstance(elem, RawDataElement) and elem.length != UNDEFINED_LENGTH:
            if elem.value_tell + elem.length > end:
                raise HeaderError(f"element {elem.tag} runs past the end of the dataset")
    return ds


def read_file_header(path: Path) -> tuple[Dataset, str]:
    """The header of a Part 10 file in the spool, and its transfer syntax."""
    try:
        ds = dcmread(path, stop_before_pixels=True)
        ts = str(ds.file_meta.TransferSyntaxUID)
    except Exception as exc:
        raise HeaderError(f"{path}: cannot be read: {type(exc).__name__}: {exc}") from None
    return ds, ts


# What the store keeps, by tag. Values are taken from the raw element bytes: every one of
# these is text in DICOM except Rows and Columns (US), and multi-values stay joined by
# backslash as they are encoded. Only text whose meaning depends on the character set
# (PN, LO, SH) goes through pydicom's decoding, and only when the dataset declares one.
# A UID loses only its trailing padding: a leading NUL or space makes it another (invalid)
# UID, which the handler refuses, where other text loses padding at both ends.
_ASCII, _UID, _CHARSET, _INT, _FLOAT, _US = "ascii", "uid", "charset", "int", "float", "us"
_FIELDS: dict[str, tuple[int, str]] = {
    "sop_class_uid": (0x00080016, _UID),
    "sop_instance_uid": (0x00080018, _UID),
    "study_uid": (0x0020000D, _UID),
    "series_uid": (0x0020000E, _UID),
    "modality": (0x00080060, _ASCII),
    "series_number": (0x00200011, _INT),
    "series_description": (0x0008103E, _CHARSET),
    "body_part_examined": (0x00180015, _ASCII),
    "patient_id": (0x00100020, _CHARSET),
    "patient_name": (0x00100010, _CHARSET),
    "accession_number": (0x00080050, _CHARSET),
    "study_date": (0x00080020, _ASCII),
    "study_time": (0x00080030, _ASCII),
    "study_description": (0x00081030, _CHARSET),
    "instance_number": (0x00200013, _INT),
    "image_type": (0x00080008, _ASCII),
    "rows": (0x00280010, _US),
    "columns": (0x00280011, _US),
    "number_of_frames": (0x00280008, _INT),
    "pixel_spacing": (0x00280030, _ASCII),
    "slice_thickness": (0x00180050, _FLOAT),
    "image_position": (0x00200032, _ASCII),
    "image_orientation": (0x00200037, _ASCII),
    "contrast_bolus_agent": (0x00180010, _CHARSET),
}
_REQUIRED = ("sop_class_uid", "sop_instance_uid", "study_uid", "series_uid")
SPECIFIC_CHARACTER_SET = 0x00080005


def instance_header(ds: Dataset, transfer_syntax: str) -> InstanceHeader:
    """The store's view of a parsed header. UIDs are returned as found, not validated;
    a missing UID is an empty string, a malformed optional value is None."""
    has_charset = SPECIFIC_CHARACTER_SET in ds
    values: dict[str, Any] = {}
    for name, (tag, kind) in _FIELDS.items():
        values[name] = _field(ds, tag, kind, has_charset)
    for name in _REQUIRED:
        values[name] = values[name] or ""
    return InstanceHeader(transfer_syntax_uid=transfer_syntax, **values)


def _field(ds: Dataset, tag: int, kind: str, has_charset: bool) -> Any:
    try:
        elem = ds.get_item(tag)
        if elem is None:
            return None
        if not isinstance(elem, RawDataElement) or (kind == _CHARSET and has_charset):
            return _converted(ds[tag].value, kind)
        raw = elem.value
        if not raw:
            return None
        if kind == _US:
            return int.from_bytes(raw[:2], "little" if elem.is_little_endian else "big")
        text = raw.decode("latin-1")
        text = text.rstrip(" \0") if kind == _UID else text.strip(" \0")
        if not text:
            return None
        if kind == _INT:
            return int(text.split("\\", 1)[0])
        if kind == _FLOAT:
            return float(text.split("\\", 1)[0])
        return text
    except (ValueError, TypeError, KeyError, LookupError):
        # A malformed optional value must not cost the instance: it is left out.
        return None


def _converted(value: Any, kind: str) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, list | tuple | MultiValue):
        if kind in (_INT, _FLOAT, _US):
            value = value[0]
        else:
            return "\\".join(str(v) for v in value).strip() or None
    if kind in (_INT, _US):
        return int(value)
    if kind == _FLOAT:
        return float(value)
    text = str(value)
    return (text.rstrip(" \0") if kind == _UID else text.strip(" \0")) or None
