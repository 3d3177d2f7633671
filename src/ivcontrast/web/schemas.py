"""What the HTTP API returns: response models, and their construction from store rows.

Patient names and IDs appear only in ``patient``, which stays null unless
``web.show_patient_names`` is set; the accession number (it identifies the patient's study
at the hospital) is null unless it is set too. A result's ``label`` is ``review`` where the network and
the physics opinion (the blood pool's HU) disagree or the network is unsure; the network's own
call, the reasons and the physics opinion come with it.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError

from ivcontrast.store.models import (
    Association,
    Event,
    Job,
    Result,
    Series,
    Study,
    Worker,
    Writeback,
)
from ivcontrast.store.read import InstanceStats, SeriesAssociation

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    total: int = Field(description="rows matching the filters, over all pages")
    limit: int
    offset: int
    items: list[T]


class Patient(BaseModel):
    name: str | None
    id: str | None


LABEL_DESCRIPTION = "contrast, no_contrast or review (a person decides)"


class ResultSummary(BaseModel):
    series_version: int
    current: bool = Field(description="false while a re-opened series waits to be re-classified")
    probability: float
    label: str = Field(description=LABEL_DESCRIPTION)
    network_label: str | None = Field(
        description="the network's own call (contrast or no_contrast); null for old results"
    )
    review_reasons: list[str] = Field(description="why the series is in review; empty otherwise")
    physics_label: str | None = Field(
        description="what the blood pool's HU says; null when not measured or not found"
    )
    physics_hu: float | None = Field(description="the blood pool's HU (calcium excluded)")
    physics_structure: str | None = Field(description="where the blood pool was measured")
    threshold: float
    tag_status: str = Field(description="missing, agrees or disagrees")
    original_contrast_agent: str | None = Field(description="ContrastBolusAgent as received")
    model_name: str
    model_version: str
    created_at: datetime


class SlicePoint(BaseModel):
    z_mm: float = Field(description="position along the slice normal")
    probability: float


class PhysicsOut(BaseModel):
    """The physics second opinion: the blood pool found (or why not), and its HU."""

    found: bool
    contrast: bool | None = Field(None, description="HU at or above threshold_hu")
    structure: str | None = None
    hu: float | None = Field(None, description="median over the vessel's core, calcium excluded")
    slice_index: int | None = Field(None, description="in the series sorted along z, from 0")
    z_mm: float | None = Field(None, description="that slice's position along the slice normal")
    row: float | None = Field(None, description="centre: pixel row (anterior -> posterior)")
    col: float | None = Field(None, description="centre: pixel column (patient right -> left)")
    radius_mm: float | None = None
    threshold_hu: float | None = None
    reason: str = Field("", description="how it was measured, or why nothing was found")


class ResultDetail(ResultSummary):
    physics: PhysicsOut | None = Field(description="null when no physics opinion was measured")
    physics_seconds: float | None
    model_sha256: str | None
    aggregation: str
    slices_used: int
    device: str | None
    load_seconds: float | None
    preprocess_seconds: float | None
    inference_seconds: float | None
    total_seconds: float | None
    slice_probabilities: list[SlicePoint]


class SeriesSummary(BaseModel):
    series_uid: str
    study_uid: str
    accession_number: str | None = Field(description="only when web.show_patient_names is set")
    study_date: str | None
    study_description: str | None
    modality: str | None
    series_number: int | None
    series_description: str | None
    body_part_examined: str | None
    instances: int
    state: str
    version: int
    skip_reason: str | None
    error: str | None
    first_received_at: datetime
    last_received_at: datetime
    completed_at: datetime | None
    result: ResultSummary | None
    patient: Patient | None = Field(None, description="only when web.show_patient_names is set")


class AssociationOut(BaseModel):
    id: str
    listener: str
    calling_ae: str
    called_ae: str
    peer_host: str
    peer_port: int | None
    state: str
    reason: str | None
    started_at: datetime
    ended_at: datetime | None
    instances_received: int
    instances_failed: int
    bytes_received: int


class SeriesAssociationOut(AssociationOut):
    instances_in_series: int


class JobOut(BaseModel):
    id: int
    kind: str
    series_uid: str
    series_version: int
    key: str
    state: str
    attempts: int
    max_attempts: int
    outcome: str | None
    error: str | None
    available_at: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    lease_owner: str | None
    lease_expires_at: datetime | None


class InstancesOut(BaseModel):
    count: int
    bytes: int
    transfer_syntaxes: list[str]
    sop_classes: list[str]
    first_received_at: datetime | None
    last_received_at: datetime | None


class ThumbnailOut(BaseModel):
    index: int
    sop_instance_uid: str
    instance_number: int | None
    z_mm: float | None
    url: str


class WritebackOut(BaseModel):
    job_id: int
    series_version: int
    destination: str
    destination_kind: str
    label: str = Field(description="the label written into the copies")
    uid_policy: str
    copies_series_uid: str | None
    report_series_uid: str | None
    instances_total: int
    instances_sent: int
    report_sent: bool
    outcome: str | None = Field(description="of the last attempt: sent, failed or superseded")
    last_status: str | None
    error: str | None
    created_at: datetime
    attempted_at: datetime | None
    sent_at: datetime | None


class SeriesDetail(SeriesSummary):
    instance_stats: InstancesOut
    associations: list[SeriesAssociationOut]
    jobs: list[JobOut]
    writebacks: list[WritebackOut]
    results: list[ResultDetail] = Field(description="every result version, newest first")
    thumbnails: list[ThumbnailOut]
    physics_thumbnail: str | None = Field(
        description="the slice of the blood pool with it circled (PNG), when one was found"
    )


class ResultOut(BaseModel):
    """One row of the results export."""

    series_uid: str
    study_uid: str
    accession_number: str | None = Field(description="only when web.show_patient_names is set")
    study_date: str | None
    modality: str | None
    series_number: int | None
    series_description: str | None
    series_version: int
    current: bool
    probability: float
    label: str = Field(description=LABEL_DESCRIPTION)
    network_label: str | None
    review_reasons: list[str]
    physics_label: str | None
    physics_hu: float | None
    physics_structure: str | None
    physics: PhysicsOut | None
    threshold: float
    tag_status: str
    original_contrast_agent: str | None
    model_name: str
    model_version: str
    aggregation: str
    slices_used: int
    device: str | None
    total_seconds: float | None
    created_at: datetime
    patient_name: str | None = None
    patient_id: str | None = None


class EventOut(BaseModel):
    id: int
    at: datetime
    kind: str
    association_id: str | None
    series_uid: str | None
    sop_instance_uid: str | None
    detail: str | None


class WorkerOut(BaseModel):
    id: str
    host: str
    pid: int
    kinds: list[str]
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_seconds: float
    jobs_done: int
    jobs_failed: int


class JobCount(BaseModel):
    kind: str
    state: str
    count: int


class SummaryOut(BaseModel):
    series_by_state: dict[str, int]
    results_by_label: dict[str, int] = Field(
        description="each series' newest result by label: contrast, no_contrast, review"
    )
    in_review: int = Field(description="series whose newest result waits for a person")
    results_by_tag_status: dict[str, int]
    jobs: list[JobCount]
    instances: int
    associations: int
    workers: list[WorkerOut]


class Check(BaseModel):
    status: Literal["ok", "warn", "fail"]
    detail: str
    data: dict[str, Any] = Field(default_factory=dict)


class HealthOut(BaseModel):
    status: Literal["ok", "fail"]
    version: str
    checked_at: datetime
    checks: dict[str, Check]


# -- construction from store rows ------------------------------------------------------------


def patient(study: Study, show: bool) -> Patient | None:
    return Patient(name=study.patient_name, id=study.patient_id) if show else None


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def physics_out(raw: Any) -> PhysicsOut | None:
    """The stored opinion (``BloodPool.to_dict``); None when absent or malformed, and
    non-finite numbers as null (JSON has no NaN)."""
    if not isinstance(raw, dict):
        return None
    numbers = ("hu", "z_mm", "row", "col", "radius_mm", "threshold_hu")
    clean = {k: v for k, v in raw.items() if k in PhysicsOut.model_fields}
    clean.update({k: _finite(raw.get(k)) for k in numbers})
    try:
        return PhysicsOut.model_validate(clean)
    except ValidationError:
        return None


def review_fields(result: Result) -> dict[str, Any]:
    """The review state and the physics summary, as the summary and the export show them."""
    return {
        "network_label": result.network_label,
        "review_reasons": [str(r) for r in result.review_reasons or []],
        "physics_label": result.physics_label,
        "physics_hu": _finite(result.physics_hu),
        "physics_structure": result.physics_structure,
    }


def result_summary(result: Result, series: Series) -> ResultSummary:
    return ResultSummary(
        series_version=result.series_version,
        current=result.series_version == series.version,
        probability=result.probability,
        label=result.label,
        **review_fields(result),
        threshold=result.threshold,
        tag_status=result.tag_status,
        original_contrast_agent=result.original_contrast_agent,
        model_name=result.model_name,
        model_version=result.model_version,
        created_at=result.created_at,
    )


def slice_points(raw: Any) -> list[SlicePoint]:
    """``[[z_mm, p], ...]`` as stored; malformed or non-finite points are left out."""
    points = []
    for item in raw or []:
        if not isinstance(item, list | tuple) or len(item) != 2:
            continue
        z, p = item
        if isinstance(z, int | float) and isinstance(p, int | float):
            if math.isfinite(z) and math.isfinite(p):
                points.append(SlicePoint(z_mm=float(z), probability=float(p)))
    return sorted(points, key=lambda point: point.z_mm)


def result_detail(result: Result, series: Series) -> ResultDetail:
    return ResultDetail(
        **result_summary(result, series).model_dump(),
        physics=physics_out(result.physics),
        physics_seconds=result.physics_seconds,
        model_sha256=result.model_sha256,
        aggregation=result.aggregation,
        slices_used=result.slices_used,
        device=result.device,
        load_seconds=result.load_seconds,
        preprocess_seconds=result.preprocess_seconds,
        inference_seconds=result.inference_seconds,
        total_seconds=result.total_seconds,
        slice_probabilities=slice_points(result.slice_probabilities),
    )


def series_summary(
    series: Series, study: Study, result: Result | None, show_patient: bool
) -> SeriesSummary:
    return SeriesSummary(
        series_uid=series.series_uid,
        study_uid=study.study_uid,
        accession_number=study.accession_number if show_patient else None,
        study_date=study.study_date,
        study_description=study.study_description,
        modality=series.modality,
        series_number=series.series_number,
        series_description=series.series_description,
        body_part_examined=series.body_part_examined,
        instances=series.instance_count,
        state=series.state,
        version=series.version,
        skip_reason=series.skip_reason,
        error=series.error,
        first_received_at=series.first_received_at,
        last_received_at=series.last_received_at,
        completed_at=series.completed_at,
        result=result_summary(result, series) if result is not None else None,
        patient=patient(study, show_patient),
    )


def association_out(a: Association) -> AssociationOut:
    return AssociationOut.model_validate(a, from_attributes=True)


def series_association_out(row: SeriesAssociation) -> SeriesAssociationOut:
    return SeriesAssociationOut(
        **association_out(row.association).model_dump(), instances_in_series=row.instances
    )


def job_out(job: Job, series_uid: str) -> JobOut:
    return JobOut(
        id=job.id,
        kind=job.kind,
        series_uid=series_uid,
        series_version=job.series_version,
        key=job.key,
        state=job.state,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        outcome=job.outcome,
        error=job.error,
        available_at=job.available_at,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        lease_owner=job.lease_owner,
        lease_expires_at=job.lease_expires_at,
    )


def writeback_out(w: Writeback) -> WritebackOut:
    return WritebackOut.model_validate(w, from_attributes=True)


def instances_out(stats: InstanceStats) -> InstancesOut:
    return InstancesOut.model_validate(stats, from_attributes=True)


def result_out(result: Result, series: Series, study: Study, show_patient: bool) -> ResultOut:
    return ResultOut(
        series_uid=series.series_uid,
        study_uid=study.study_uid,
        accession_number=study.accession_number if show_patient else None,
        study_date=study.study_date,
        modality=series.modality,
        series_number=series.series_number,
        series_description=series.series_description,
        series_version=result.series_version,
        current=result.series_version == series.version,
        probability=result.probability,
        label=result.label,
        **review_fields(result),
        physics=physics_out(result.physics),
        threshold=result.threshold,
        tag_status=result.tag_status,
        original_contrast_agent=result.original_contrast_agent,
        model_name=result.model_name,
        model_version=result.model_version,
        aggregation=result.aggregation,
        slices_used=result.slices_used,
        device=result.device,
        total_seconds=result.total_seconds,
        created_at=result.created_at,
        patient_name=study.patient_name if show_patient else None,
        patient_id=study.patient_id if show_patient else None,
    )


def event_out(e: Event) -> EventOut:
    return EventOut.model_validate(e, from_attributes=True)


def worker_out(w: Worker, now: datetime) -> WorkerOut:
    return WorkerOut(
        id=w.id,
        host=w.host,
        pid=w.pid,
        kinds=[k for k in w.kinds.split(",") if k],
        started_at=w.started_at,
        heartbeat_at=w.heartbeat_at,
        heartbeat_age_seconds=max(0.0, (now - w.heartbeat_at).total_seconds()),
        jobs_done=w.jobs_done,
        jobs_failed=w.jobs_failed,
    )
