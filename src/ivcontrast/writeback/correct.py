"""Corrected copies: one spooled instance in, one corrected instance out.

The copy sets the Contrast/Bolus attributes per policy (an original ContrastBolusAgent that
already agrees with the label is kept), gets new Series and SOP Instance UIDs (unless the
policy keeps them), says in its SeriesDescription that it was corrected, names ivcontrast
and the model in the Contributing Equipment Sequence, keeps the original values in the
Original Attributes Sequence (reason CORRECT), and refers to its source instance in the
Source Image Sequence. Pixel data and transfer syntax are left exactly as
they were: the data set is re-encoded, the pixel data bytes are not decoded.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from highdicom import ContributingEquipment
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sr.codedict import codes
from pydicom.uid import UID
from pydicom.valuerep import DT

from ivcontrast.classifier.tags import tag_says_contrast
from ivcontrast.writeback.policy import ContrastTags
from ivcontrast.writeback.uids import WritebackUids

MANUFACTURER = "ivcontrast"
LO_MAX = 64
# Values longer than this stay in the file when it is read, and are read again while it is
# written: a copy never holds more than one instance, and not its pixel data twice.
DEFER_SIZE = "256 KB"


@dataclass(frozen=True)
class Contribution:
    """Who corrected the copy, with which model, when and why."""

    software_version: str
    model_name: str
    model_version: str
    when: datetime
    description: str

    def equipment(self) -> Dataset:
        """An item of the Contributing Equipment Sequence (0018,A001)."""
        return ContributingEquipment(
            manufacturer=MANUFACTURER,
            purpose_of_reference=codes.DCM.ModifyingEquipment,
            manufacturer_model_name=MANUFACTURER,
            software_versions=[
                f"{MANUFACTURER} {self.software_version}"[:LO_MAX],
                f"{self.model_name} {self.model_version}"[:LO_MAX],
            ],
            contribution_datetime=DT(self.when),
            contribution_description=self.description[:1024],
        )


@dataclass(frozen=True)
class CopyPlan:
    """Everything that turns an original instance into its corrected copy."""

    tags: ContrastTags
    uids: WritebackUids
    description_suffix: str
    contribution: Contribution


@dataclass(frozen=True)
class CopiedInstance:
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str


def corrected_description(original: str | None, suffix: str) -> str:
    """``original`` + ``suffix`` within LO's 64 characters; never suffixed twice."""
    base = (original or "").strip()
    if base.endswith(suffix.strip()):
        return base[:LO_MAX]
    if not base:
        return suffix.strip()[:LO_MAX]
    return base[: LO_MAX - len(suffix)].rstrip() + suffix


class _Editor:
    """Changes a data set and keeps the previous value of each changed attribute."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds
        self.previous = Dataset()

    def _keep(self, keyword: str) -> None:
        if keyword in self.ds and keyword not in self.previous:
            self.previous[keyword] = copy.deepcopy(self.ds[keyword])

    def set(self, keyword: str, value: Any) -> None:
        if keyword in self.ds and self.ds[keyword].value == value:
            return
        self._keep(keyword)
        setattr(self.ds, keyword, value)

    def remove(self, keyword: str) -> None:
        if keyword in self.ds:
            self._keep(keyword)
            del self.ds[keyword]

    def append(self, keyword: str, item: Dataset) -> None:
        self._keep(keyword)
        items = list(self.ds[keyword].value) if keyword in self.ds else []
        setattr(self.ds, keyword, [*items, item])


def correct_dataset(ds: Dataset, plan: CopyPlan) -> Dataset:
    """Turn ``ds`` (an original instance, with its file meta) into its corrected copy."""
    edit = _Editor(ds)
    original_sop_uid = str(ds.SOPInstanceUID)
    for keyword, value in plan.tags.values.items():
        if keyword == "ContrastBolusAgent" and (
            tag_says_contrast(ds.get(keyword)) is plan.tags.contrast
        ):
            continue  # it already says so, maybe more precisely ('OMNIPAQUE 350'): kept
        edit.set(keyword, value)
    for keyword in plan.tags.remove:
        edit.remove(keyword)
    edit.set(
        "SeriesDescription",
        corrected_description(ds.get("SeriesDescription"), plan.description_suffix),
    )
    if not plan.uids.keep:
        new_sop_uid = plan.uids.copy_sop_uid(original_sop_uid)
        edit.set("SeriesInstanceUID", plan.uids.copies_series_uid)
        edit.set("SOPInstanceUID", new_sop_uid)
        ds.file_meta.MediaStorageSOPInstanceUID = UID(new_sop_uid)
        source = Dataset()
        source.ReferencedSOPClassUID = ds.SOPClassUID
        source.ReferencedSOPInstanceUID = original_sop_uid
        source.SpatialLocationsPreserved = "YES"  # same pixels, same geometry
        edit.append("SourceImageSequence", source)
    edit.append("ContributingEquipmentSequence", plan.contribution.equipment())

    if len(edit.previous):
        _record_previous(ds, edit.previous, plan.contribution)
    return ds


def _record_previous(ds: Dataset, previous: Dataset, contribution: Contribution) -> None:
    """PS3.3 C.12.1.1.9: keep the previous values of every modified or removed attribute."""
    original = Dataset()
    original.AttributeModificationDateTime = DT(contribution.when)
    original.ModifyingSystem = f"{MANUFACTURER} {contribution.software_version}"[:LO_MAX]
    original.SourceOfPreviousValues = ""
    original.ReasonForTheAttributeModification = "CORRECT"
    original.ModifiedAttributesSequence = [previous]
    items = list(ds.OriginalAttributesSequence) if "OriginalAttributesSequence" in ds else []
    ds.OriginalAttributesSequence = [*items, original]


class UnreadableSource(ValueError):
    """A spooled instance that is not a DICOM Part 10 file: retrying cannot help."""


def write_corrected_copy(source: Path, target: BinaryIO, plan: CopyPlan) -> CopiedInstance:
    """Read ``source`` (never modified), write its corrected copy to ``target``."""
    try:
        ds = dcmread(source, defer_size=DEFER_SIZE)
    except InvalidDicomError as exc:
        raise UnreadableSource(f"{source}: not a DICOM file: {exc}") from exc
    if "TransferSyntaxUID" not in ds.file_meta:
        raise UnreadableSource(f"{source}: no file meta information (not a DICOM Part 10 file)")
    correct_dataset(ds, plan)
    ds.save_as(target, enforce_file_format=True)
    return CopiedInstance(
        str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(ds.file_meta.TransferSyntaxUID)
    )
