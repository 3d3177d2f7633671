"""A DICOM report of the finding: one Comprehensive SR per series version.

The SR follows TID 1500 (Measurement Report) with one measurement group (TID 1501) for the
series: a qualitative evaluation "Contrast/Bolus Agent: Present | Absent", the scan-level
probability and the decision threshold as measurements, and the model (name, version,
aggregation, slices used) as its Algorithm Identification (TID 4019). The group lists the
classified instances as its source images, and the Current Requested Procedure Evidence
Sequence references them too, so a viewer can go from the report to the series.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from ivcontrast.writeback.correct import MANUFACTURER
from ivcontrast.writeback.policy import CONTRAST
from ivcontrast.writeback.uids import WritebackUids, stable_uid

# Viewers list series by number: keep the report after the images of the study.
REPORT_SERIES_NUMBER = 9901
REPORT_DESCRIPTION = "IV contrast finding (ivcontrast)"
# Type 2 attributes of the Patient and General Study modules the SR copies from its source.
_COPIED_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


@dataclass(frozen=True)
class Finding:
    """The contrast call the report states."""

    label: str
    probability: float
    threshold: float
    model_name: str
    model_version: str
    aggregation: str
    slices_used: int


@dataclass(frozen=True)
class SourceInstance:
    sop_class_uid: str
    sop_instance_uid: str


def build_report(
    first_source: Dataset,
    sources: Sequence[SourceInstance],
    finding: Finding,
    uids: WritebackUids,
    software_version: str,
    when: datetime,
) -> hd.sr.ComprehensiveSR:
    """The SR for ``finding`` on the series of ``sources``.

    ``first_source`` is the header (no pixel data needed) of one instance of the series:
    the report copies its patient and study attributes. ``sources`` lists every classified
    instance; only their UIDs are needed, so a series of any size is referenced cheaply.
    """
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=device_uid(uids.prefix),
        name=MANUFACTURER,
        manufacturer_name=MANUFACTURER,
        model_name=f"{finding.model_name} {finding.model_version}"[:64],
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_device_context=hd.sr.ObserverContext(
                observer_type=codes.cid270.Device, observer_identifying_attributes=device
            )
        ),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=[_measurements(sources, finding, uids)],
    )
    return hd.sr.ComprehensiveSR(
        evidence=_evidence(first_source, sources),
        content=report[0],
        series_instance_uid=uids.report_series_uid,
        series_number=REPORT_SERIES_NUMBER,
        sop_instance_uid=uids.report_sop_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MANUFACTURER,
        software_versions=f"{MANUFACTURER} {software_version}",
        series_description=REPORT_DESCRIPTION,
        is_complete=True,
        content_date=when.date(),
        content_time=when.time(),
        series_date=when.date(),
        series_time=when.time(),
    )


def _evidence(first_source: Dataset, sources: Sequence[SourceInstance]) -> list[Dataset]:
    """The references to the classified instances; the first also carries the patient and
    study attributes the report copies from ``first_source``."""
    header = Dataset()
    for keyword in (*_COPIED_TYPE2, "StudyInstanceUID", "SpecificCharacterSet"):
        if keyword in first_source:
            header[keyword] = first_source[keyword]
        elif keyword in _COPIED_TYPE2:
            setattr(header, keyword, None)
    evidence: list[Dataset] = []
    for source in sources:
        item = Dataset() if evidence else header
        item.StudyInstanceUID = first_source.StudyInstanceUID
        item.SeriesInstanceUID = first_source.SeriesInstanceUID
        item.SOPClassUID = source.sop_class_uid
        item.SOPInstanceUID = source.sop_instance_uid
        evidence.append(item)
    return evidence


def _measurements(
    sources: Sequence[SourceInstance], finding: Finding, uids: WritebackUids
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """The finding: probability and threshold, contrast present or absent, and the model."""
    algorithm = hd.sr.AlgorithmIdentification(
        name=finding.model_name,
        version=finding.model_version,
        parameters=[
            f"threshold {finding.threshold:g}",
            f"aggregation {finding.aggregation}",
            f"slices used {finding.slices_used}",
        ],
    )
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=uids.named("tracking"), identifier="IV contrast"
        ),
        finding_type=codes.SCT.ContrastMedia,
        algorithm_id=algorithm,
        measurements=[
            hd.sr.Measurement(
                name=codes.DCM.Probability,
                value=round(finding.probability, 6),
                unit=codes.UCUM.NoUnits,
            ),
            hd.sr.Measurement(
                name=codes.DCM.ThresholdValue,
                value=finding.threshold,
                unit=codes.UCUM.NoUnits,
            ),
        ],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(
                name=codes.DCM.ContrastBolusAgent,
                value=codes.SCT.Present if finding.label == CONTRAST else codes.SCT.Absent,
            )
        ],
        source_images=[
            hd.sr.SourceImageForMeasurementGroup(s.sop_class_uid, s.sop_instance_uid)
            for s in sources
        ],
    )


def device_uid(prefix: str) -> str:
    """The UID that identifies ivcontrast as the observer device in every report."""
    return stable_uid(prefix, "observer-device")
