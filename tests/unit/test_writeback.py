"""Write-back core: trigger policy, tag values, deterministic UIDs, corrected copies, report,
and enqueueing in the result's transaction."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import pytest
from pydicom import dcmread
from pydicom.sr.codedict import codes
from pydicom.uid import RLELossless
from sqlalchemy import func, select

from ivcontrast.classifier.tags import tag_says_contrast
from ivcontrast.config import WritebackSettings
from ivcontrast.store.db import Database
from ivcontrast.store.models import Job, Writeback
from ivcontrast.writeback import WRITEBACK, enqueue_writeback
from ivcontrast.writeback.correct import (
    Contribution,
    CopiedInstance,
    CopyPlan,
    correct_dataset,
    corrected_description,
    write_corrected_copy,
)
from ivcontrast.writeback.policy import confidence, contrast_tags, selected
from ivcontrast.writeback.report import Finding, SourceInstance, build_report
from ivcontrast.writeback.uids import WritebackUids
from tests.support.writeback_data import ct_slice, make_result, spool_series

FOLDER = {"kind": "folder", "name": "out", "path": "/tmp/unused"}
WHEN = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def policy(**kwargs: object) -> WritebackSettings:
    return WritebackSettings.model_validate({"enabled": True, "destinations": [FOLDER], **kwargs})


def plan_for(label: str, settings: WritebackSettings, series_uid: str, keep: bool = False):
    uids = WritebackUids(settings.uid_prefix, series_uid, 1, keep)
    contribution = Contribution("0.1.0", "effb0", "1.2.0", WHEN, "test correction")
    return CopyPlan(contrast_tags(settings, label), uids, settings.description_suffix, contribution)


# -- policy -----------------------------------------------------------------------------------


def test_confidence_is_the_probability_of_the_given_label() -> None:
    assert confidence("contrast", 0.8) == pytest.approx(0.8)
    assert confidence("no_contrast", 0.1) == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        # (label, probability, tag_status) cases below, in order
        ("all", [True, True, True, True]),
        ("disagreements", [True, True, False, True]),
        ("confident", [True, False, True, False]),
        ("confident_disagreements", [True, False, False, False]),
    ],
)
def test_trigger_selects(trigger: str, expected: list[bool]) -> None:
    cases = [
        ("contrast", 0.99, "missing"),
        ("contrast", 0.6, "disagrees"),
        ("no_contrast", 0.02, "agrees"),
        ("no_contrast", 0.3, "missing"),
    ]
    settings = policy(trigger=trigger, min_confidence=0.9)
    assert [selected(settings, *case) for case in cases] == expected


def test_contrast_tags_per_label() -> None:
    settings = policy(contrast_ingredient="IODINE")
    yes = contrast_tags(settings, "contrast")
    assert yes.values == {
        "ContrastBolusAgent": "IV CONTRAST",
        "ContrastBolusRoute": "IV",
        "ContrastBolusIngredient": "IODINE",
    }
    assert yes.remove == ()
    no = contrast_tags(settings, "no_contrast")
    assert no.values == {"ContrastBolusAgent": "NONE"}
    assert {"ContrastBolusRoute", "ContrastBolusIngredient", "ContrastBolusVolume"} <= set(
        no.remove
    )
    removed = contrast_tags(policy(no_contrast_agent=""), "no_contrast")
    assert removed.values == {} and "ContrastBolusAgent" in removed.remove
    with pytest.raises(ValueError):
        contrast_tags(settings, "maybe")


# -- UIDs -------------------------------------------------------------------------------------


def test_uids_are_deterministic_valid_and_versioned() -> None:
    prefix = WritebackSettings().uid_prefix
    a = WritebackUids(prefix, "1.2.3.4", 1, keep=False)
    again = WritebackUids(prefix, "1.2.3.4", 1, keep=False)
    v2 = WritebackUids(prefix, "1.2.3.4", 2, keep=False)
    uids = [a.copies_series_uid, a.copy_sop_uid("1.2.3.4.5"), a.report_series_uid, a.report_sop_uid]
    assert len(set(uids)) == 4
    for uid in uids:
        assert uid.startswith(prefix) and len(uid) <= 64
        assert all(part.isdigit() for part in uid.split("."))
    assert again.copies_series_uid == a.copies_series_uid
    assert again.copy_sop_uid("1.2.3.4.5") == a.copy_sop_uid("1.2.3.4.5")
    assert v2.copies_series_uid != a.copies_series_uid
    assert v2.report_sop_uid != a.report_sop_uid
    keep = WritebackUids(prefix, "1.2.3.4", 1, keep=True)
    assert keep.copies_series_uid == "1.2.3.4" and keep.copy_sop_uid("1.2.3.4.5") == "1.2.3.4.5"
    assert WritebackUids("1.2.40.99.", "1.2.3.4", 1, False).copies_series_uid.startswith(
        "1.2.40.99."
    )


# -- corrected copies -------------------------------------------------------------------------


def test_description_suffix_fits_lo_and_is_not_repeated() -> None:
    suffix = " (contrast corrected)"
    assert corrected_description("Chest", suffix) == "Chest (contrast corrected)"
    assert corrected_description(None, suffix) == "(contrast corrected)"
    long = corrected_description("X" * 64, suffix)
    assert len(long) == 64 and long.endswith(suffix)
    assert corrected_description(long, suffix) == long


def test_correct_dataset_contrast() -> None:
    ds = ct_slice("1.2.3", "1.2.3.1", "1.2.3.9", 0, contrast_agent="N")
    ds.ContrastBolusRoute = "ORAL"
    original_sop, pixels = ds.SOPInstanceUID, bytes(ds.PixelData)
    settings = policy()
    plan = plan_for("contrast", settings, "1.2.3.1")
    out = correct_dataset(ds, plan)
    assert out.ContrastBolusAgent == "IV CONTRAST" and out.ContrastBolusRoute == "IV"
    assert tag_says_contrast(out.ContrastBolusAgent) is True
    assert out.SeriesInstanceUID == plan.uids.copies_series_uid
    assert out.SOPInstanceUID == plan.uids.copy_sop_uid(original_sop)
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert out.SeriesDescription == "Chest 1.25mm (contrast corrected)"
    assert bytes(out.PixelData) == pixels
    (source,) = out.SourceImageSequence
    assert source.ReferencedSOPInstanceUID == original_sop
    assert source.ReferencedSOPClassUID == out.SOPClassUID
    (equipment,) = out.ContributingEquipmentSequence
    assert equipment.Manufacturer == "ivcontrast"
    assert list(equipment.SoftwareVersions) == ["ivcontrast 0.1.0", "effb0 1.2.0"]
    assert equipment.PurposeOfReferenceCodeSequence[0].CodeValue == "109103"
    assert str(equipment.ContributionDateTime).startswith("20240506070809")
    (original,) = out.OriginalAttributesSequence
    assert original.ReasonForTheAttributeModification == "CORRECT"
    previous = original.ModifiedAttributesSequence[0]
    assert previous.ContrastBolusAgent == "N" and previous.ContrastBolusRoute == "ORAL"
    assert previous.SOPInstanceUID == original_sop and previous.SeriesInstanceUID == "1.2.3.1"


def test_correct_dataset_no_contrast_removes_the_details() -> None:
    ds = ct_slice("1.2.3", "1.2.3.1", "1.2.3.9", 0, contrast_agent="OMNIPAQUE 350")
    ds.ContrastBolusRoute = "IV"
    ds.ContrastBolusVolume = 80
    out = correct_dataset(ds, plan_for("no_contrast", policy(), "1.2.3.1"))
    assert out.ContrastBolusAgent == "NONE" and tag_says_contrast(out.ContrastBolusAgent) is False
    assert "ContrastBolusRoute" not in out and "ContrastBolusVolume" not in out
    previous = out.OriginalAttributesSequence[0].ModifiedAttributesSequence[0]
    assert previous.ContrastBolusAgent == "OMNIPAQUE 350" and previous.ContrastBolusVolume == 80


@pytest.mark.parametrize(
    ("label", "original", "expected"),
    [
        ("contrast", "OMNIPAQUE 350", "OMNIPAQUE 350"),  # agrees, and says more: kept
        ("contrast", "NONE", "IV CONTRAST"),
        ("contrast", None, "IV CONTRAST"),
        ("no_contrast", "N", "N"),
        ("no_contrast", "IOPAMIDOL", "NONE"),
    ],
)
def test_an_agreeing_agent_is_kept(label: str, original: str | None, expected: str) -> None:
    ds = ct_slice("1.2.3", "1.2.3.1", "1.2.3.9", 0, contrast_agent=original)
    out = correct_dataset(ds, plan_for(label, policy(), "1.2.3.1"))
    assert out.ContrastBolusAgent == expected
    assert ("ContrastBolusRoute" in out) is (label == "contrast")


def test_keep_uid_policy_keeps_uids_and_adds_no_self_reference() -> None:
    ds = ct_slice("1.2.3", "1.2.3.1", "1.2.3.9", 0)
    sop = ds.SOPInstanceUID
    out = correct_dataset(ds, plan_for("contrast", policy(uid_policy="keep"), "1.2.3.1", True))
    assert out.SOPInstanceUID == sop and out.SeriesInstanceUID == "1.2.3.1"
    assert "SourceImageSequence" not in out
    assert out.ContrastBolusAgent == "IV CONTRAST"


def test_copy_of_a_compressed_file_keeps_transfer_syntax_and_pixel_bytes(tmp_path: Path) -> None:
    ds = ct_slice("1.2.3", "1.2.3.1", "1.2.3.9", 0, size=32)
    ds.compress(RLELossless, encoding_plugin="pydicom")
    source = tmp_path / "source.dcm"
    ds.save_as(source, enforce_file_format=True)
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    buffer = io.BytesIO()
    copied = write_corrected_copy(source, buffer, plan_for("contrast", policy(), "1.2.3.1"))
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before  # original untouched
    assert copied.transfer_syntax_uid == RLELossless
    buffer.seek(0)
    out = dcmread(buffer)
    assert out.file_meta.TransferSyntaxUID == RLELossless
    assert bytes(out.PixelData) == bytes(dcmread(source).PixelData)  # encapsulated, as it was
    assert out.SOPInstanceUID == copied.sop_instance_uid and out.ContrastBolusAgent == "IV CONTRAST"


# -- report -----------------------------------------------------------------------------------


def test_report_states_the_finding_and_references_every_instance() -> None:
    slices = [ct_slice("1.2.3", "1.2.3.1", "1.2.3.9", i) for i in range(3)]
    uids = WritebackUids(WritebackSettings().uid_prefix, "1.2.3.1", 1, False)
    finding = Finding("no_contrast", 0.123456789, 0.5, "effb0", "1.2.0", "mean", 3)
    sources = [SourceInstance(s.SOPClassUID, s.SOPInstanceUID) for s in slices]
    sr = build_report(slices[0], sources, finding, uids, "0.1.0", WHEN)
    assert sr.SOPInstanceUID == uids.report_sop_uid
    assert sr.SeriesInstanceUID == uids.report_series_uid
    assert sr.StudyInstanceUID == "1.2.3" and sr.PatientID == "PID-WB-1"
    assert sr.Modality == "SR" and sr.CompletionFlag == "COMPLETE"
    (evidence,) = sr.CurrentRequestedProcedureEvidenceSequence
    referenced = {
        item.ReferencedSOPInstanceUID
        for series in evidence.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert referenced == {s.SOPInstanceUID for s in slices}

    def items(seq):  # every content item of the tree, depth first
        for item in seq:
            yield item
            yield from items(item.get("ContentSequence", []))

    content = list(items(sr.ContentSequence))
    names = {i.ConceptNameCodeSequence[0].CodeMeaning: i for i in content}
    assert float(names["Probability"].MeasuredValueSequence[0].NumericValue) == pytest.approx(
        0.123457
    )
    assert float(names["Threshold Value"].MeasuredValueSequence[0].NumericValue) == 0.5
    evaluation = names["Contrast/Bolus Agent"].ConceptCodeSequence[0]
    assert (evaluation.CodeValue, evaluation.CodingSchemeDesignator) == (
        codes.SCT.Absent.value,
        "SCT",
    )
    texts = {i.TextValue for i in content if i.ValueType == "TEXT"}
    assert {"effb0", "1.2.0", "threshold 0.5"} <= texts
    images = {
        i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        for i in content
        if i.ValueType == "IMAGE"
    }
    assert images == {s.SOPInstanceUID for s in slices}


def test_report_without_optional_patient_attributes() -> None:
    first = ct_slice("1.2.3", "1.2.3.1", "1.2.3.9", 0)
    del first.PatientBirthDate, first.PatientSex, first.ReferringPhysicianName
    uids = WritebackUids(WritebackSettings().uid_prefix, "1.2.3.1", 1, False)
    finding = Finding("contrast", 0.9, 0.5, "effb0", "1.2.0", "mean", 1)
    sr = build_report(
        first, [SourceInstance(first.SOPClassUID, first.SOPInstanceUID)], finding, uids, "0", WHEN
    )
    # Type 2: present, empty
    assert "PatientBirthDate" in sr and not sr.PatientBirthDate
    assert "PatientSex" in sr and not sr.PatientSex


# -- enqueueing -------------------------------------------------------------------------------


def count_jobs(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(Job).where(Job.kind == WRITEBACK))


def test_enqueue_one_job_per_destination_once_per_version(any_db: Database, tmp_path: Path) -> None:
    spooled = spool_series(any_db, tmp_path / "spool", 2)
    settings = policy(
        destinations=[
            FOLDER,
            {"kind": "dicom", "name": "pacs", "ae_title": "P", "host": "h", "port": 104},
        ],
        max_attempts=7,
        backoff_seconds=2.5,
    )
    with any_db.write() as session:
        result = make_result(spooled.series_id)
        session.add(result)
        assert enqueue_writeback(session, settings, result) == 2
        assert enqueue_writeback(session, settings, result) == 0  # same version: nothing more
    with any_db.session() as session:
        jobs = session.scalars(select(Job).order_by(Job.key)).all()
        assert [(j.key, j.series_version, j.max_attempts) for j in jobs] == [
            ("out", 1, 7),
            ("pacs", 1, 7),
        ]
        assert jobs[0].payload == {"result_id": result.id, "backoff_seconds": 2.5}
        rows = session.scalars(select(Writeback).order_by(Writeback.destination)).all()
        assert [(r.destination, r.destination_kind, r.label) for r in rows] == [
            ("out", "folder", "contrast"),
            ("pacs", "dicom", "contrast"),
        ]
        uids = WritebackUids(settings.uid_prefix, spooled.series_uid, 1, False)
        assert rows[0].copies_series_uid == uids.copies_series_uid
        assert rows[0].report_sop_uid == uids.report_sop_uid
        assert {r.job_id for r in rows} == {j.id for j in jobs}
    # A re-opened series: a new version, a new result, written back once more.
    with any_db.write() as session:
        result2 = make_result(spooled.series_id, version=2)
        session.add(result2)
        assert enqueue_writeback(session, settings, result2) == 2
    assert count_jobs(any_db) == 4


def test_nothing_is_enqueued_when_disabled_or_not_selected(db: Database, tmp_path: Path) -> None:
    spooled = spool_series(db, tmp_path / "spool", 1)
    off = WritebackSettings(destinations=[FOLDER])
    with db.write() as session:
        result = make_result(spooled.series_id, tag_status="agrees", original="IOPAMIDOL")
        session.add(result)
        assert enqueue_writeback(session, off, result) == 0
        assert enqueue_writeback(session, policy(trigger="disagreements"), result) == 0
    assert count_jobs(db) == 0
    with db.write() as session:
        assert enqueue_writeback(session, policy(trigger="all", report=False), result) == 1
    with db.session() as session:
        row = session.scalars(select(Writeback)).one()
        assert row.report_sop_uid is None and row.copies_series_uid is not None


def test_enqueue_rolls_back_with_the_result(db: Database, tmp_path: Path) -> None:
    spooled = spool_series(db, tmp_path / "spool", 1)
    with pytest.raises(RuntimeError), db.write() as session:
        result = make_result(spooled.series_id)
        session.add(result)
        enqueue_writeback(session, policy(), result)
        raise RuntimeError("the classify step failed after enqueueing")
    assert count_jobs(db) == 0


# -- destinations by kind ---------------------------------------------------------------------


def test_every_configured_kind_of_destination_has_an_opener() -> None:
    from typing import get_args

    from ivcontrast.config import Destination
    from ivcontrast.writeback.destinations import OPENERS

    union, _ = get_args(Destination)
    kinds = {get_args(cls.model_fields["kind"].annotation)[0] for cls in get_args(union)}
    assert kinds == set(OPENERS)


def test_a_folder_destination_is_opened_by_its_kind(tmp_path: Path) -> None:
    from ivcontrast.writeback.destinations import FolderSink, Outbound, open_destination

    settings = WritebackSettings.model_validate(
        {"enabled": True, "destinations": [{**FOLDER, "path": str(tmp_path / "out")}]}
    )
    outbound = Outbound(frozenset(), "IVCONTRAST", tmp_path / "staging")
    with open_destination(settings.destinations[0], outbound) as sink:
        assert isinstance(sink, FolderSink)
        delivery = sink.put("1.2", "1.2.3", "1.2.3.4", lambda fh: _copied(fh, "1.2.3.4"))
    assert delivery.ok
    assert (tmp_path / "out" / "1.2" / "1.2.3" / "1.2.3.4.dcm").read_bytes() == b"DICM"


def _copied(fh: BinaryIO, uid: str) -> CopiedInstance:
    fh.write(b"DICM")
    return CopiedInstance("1.2.840.10008.5.1.4.1.1.2", uid, "1.2.840.10008.1.2.1")
