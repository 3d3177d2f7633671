"""The one classification pipeline: prepare ahead -> prepared series -> the call as one row.

The worker's classify jobs (``worker.classify``) and ``ivcontrast classify`` both run it:

- ``prepare_dicom`` / ``prepare_volume``: read, decode and preprocess one series into a
  ``PreparedSeries`` (CPU and disk; safe in any thread).
- ``prepare_ahead``: prepares the next items in a few threads while the caller runs the
  network on the current one, in order; the backend's ``prefetch`` plan says how many.
- ``classify``: the network on a prepared series, checked against the physics opinion
  (``classifier.physics``, measured while preparing, on the slices already decoded) into a
  call or ``review`` (``classifier.review``), as a ``SeriesCall``: the one row shape that the
  results table, the CLI and JSON output are made from.

It knows nothing of the store or the queue; the worker adds those around it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from ivcontrast.classifier.dicom_series import DicomSeries
from ivcontrast.classifier.engine import Classifier, PathLike, SeriesPrediction
from ivcontrast.classifier.physics import BloodPool, assess
from ivcontrast.classifier.preprocess import ModelInput
from ivcontrast.classifier.review import Decision, decide
from ivcontrast.classifier.sources import open_source
from ivcontrast.classifier.tags import tag_status
from ivcontrast.classifier.volume import RememberingSource, SliceSource
from ivcontrast.vocabulary import Label, TagStatus

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, eq=False)
class PreparedSeries:
    """A series read and preprocessed, ready for the network.

    ``model_input`` is None when there is nothing to classify (the worker's series was
    re-opened while it was read). ``tagged`` is False for NIfTI and NRRD volumes, which have
    no ContrastBolusAgent to compare with the call.
    """

    model_input: ModelInput | None
    contrast_agent: str | None = None
    tagged: bool = True
    series_uid: str | None = None
    physics: BloodPool | None = None  # None when the classifier measures no physics
    physics_seconds: float = 0.0


def _prepare(
    classifier: Classifier, source: SliceSource, load_seconds: float
) -> tuple[ModelInput, BloodPool | None, float]:
    """Preprocess, then measure the blood pool on the slices preprocessing decoded."""
    remembering = RememberingSource(source)
    model_input = classifier.prepare(remembering, load_seconds)
    if classifier.physics is None:
        return model_input, None, 0.0
    t0 = time.perf_counter()
    pool = assess(remembering, classifier.physics, indices=model_input.slice_indices.tolist())
    return model_input, pool, time.perf_counter() - t0


def prepare_dicom(
    classifier: Classifier,
    paths: Sequence[PathLike],
    *,
    series_uid: str | None = None,
    started: float | None = None,
) -> PreparedSeries:
    """The files of one DICOM series (any order) -> ``PreparedSeries``. Raises ClassifierError.

    ``started`` (a ``time.perf_counter()``) counts earlier work, such as finding the files,
    in the series' read time.
    """
    t0 = time.perf_counter() if started is None else started
    series = DicomSeries.open(paths)
    model_input, pool, physics_s = _prepare(classifier, series, time.perf_counter() - t0)
    agent = series.attributes.get("ContrastBolusAgent")
    return PreparedSeries(model_input, agent, True, series_uid, pool, physics_s)


def prepare_volume(classifier: Classifier, path: PathLike) -> PreparedSeries:
    """A NIfTI or NRRD file -> ``PreparedSeries`` (untagged). Raises ClassifierError."""
    t0 = time.perf_counter()
    source = open_source(path)
    model_input, pool, physics_s = _prepare(classifier, source, time.perf_counter() - t0)
    return PreparedSeries(model_input, None, False, None, pool, physics_s)


def prepare_ahead(
    items: Iterable[T], prepare: Callable[[T], R], threads: int, depth: int
) -> Iterator[tuple[T, Future[R]]]:
    """``(item, future of prepare(item))`` in order, with at most ``depth`` in flight.

    The caller consumes each future (inference) while the next ones are being prepared.
    """
    pending: deque[tuple[T, Future[R]]] = deque()
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="classify-prepare") as pool:
        try:
            for item in items:
                pending.append((item, pool.submit(prepare, item)))
                if len(pending) >= max(1, depth):
                    yield pending.popleft()
            while pending:
                yield pending.popleft()
        finally:
            for _, future in pending:
                future.cancel()


@dataclass(frozen=True, eq=False)
class SeriesCall:
    """One series' contrast call as one row: the shape every output is made from.

    The worker maps it to a ``Result`` row, ``ivcontrast classify`` to its table, CSV and
    JSON. A new piece of evidence is a new field here and a line in ``of``.
    """

    label: Label  # contrast, no_contrast or review
    network_label: Label  # the network's own call (review: what it would have said)
    review_reasons: list[str]  # why review; empty for a confident call
    probability: float
    threshold: float
    aggregation: str
    slices_used: int
    slices_total: int
    slice_probabilities: list[list[float]]  # [z_mm (to the micrometre), probability] by z
    tag: str | None  # ContrastBolusAgent as received; None when absent (or a volume file)
    tag_status: TagStatus | None  # against the network's call; None for a volume file
    physics_label: Label | None  # what the blood pool's HU says; None: not measured or found
    physics_hu: float | None
    physics_structure: str | None
    physics: dict[str, Any] | None  # the whole opinion (BloodPool.to_dict), or None
    model_name: str
    model_version: str
    model_sha256: str
    backend: str  # for people: 'onnxruntime-cpu (2 threads)'
    runtime: str  # 'onnxruntime-cpu', 'torch-cuda': what the results table calls the device
    source: str
    load_seconds: float
    preprocess_seconds: float
    inference_seconds: float
    physics_seconds: float
    total_seconds: float

    @classmethod
    def of(
        cls,
        prediction: SeriesPrediction,
        decision: Decision,
        prepared: PreparedSeries,
    ) -> SeriesCall:
        timings = prediction.timings
        tagged, contrast_agent, pool = prepared.tagged, prepared.contrast_agent, prepared.physics
        found = pool if pool is not None and pool.found else None  # a measured blood pool
        return cls(
            label=decision.label,
            network_label=decision.network_label,
            review_reasons=list(decision.reasons),
            probability=float(prediction.probability),
            threshold=float(prediction.threshold),
            aggregation=prediction.aggregation,
            slices_used=prediction.slices_used,
            slices_total=prediction.slices_total,
            slice_probabilities=[
                [round(float(z), 3), float(p)]
                for z, p in zip(prediction.slice_z_mm, prediction.slice_probabilities, strict=True)
            ],
            tag=contrast_agent if tagged else None,
            tag_status=tag_status(contrast_agent, prediction.contrast) if tagged else None,
            physics_label=None if found is None else Label.of(bool(found.contrast)),
            physics_hu=None if found is None else found.hu,
            physics_structure=None if found is None else found.structure,
            physics=pool.to_dict() if pool is not None else None,
            model_name=prediction.model_name,
            model_version=prediction.model_version,
            model_sha256=prediction.model_sha256,
            backend=prediction.backend,
            runtime=prediction.runtime,
            source=prediction.source,
            load_seconds=timings.load_s,
            preprocess_seconds=timings.preprocess_s,
            inference_seconds=timings.inference_s,
            physics_seconds=prepared.physics_seconds,
            total_seconds=timings.total_s + prepared.physics_seconds,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (labels and tag status as their plain strings)."""
        return asdict(self) | {
            "label": str(self.label),
            "network_label": str(self.network_label),
            "physics_label": None if self.physics_label is None else str(self.physics_label),
            "tag_status": None if self.tag_status is None else str(self.tag_status),
        }


def classify(classifier: Classifier, prepared: PreparedSeries) -> SeriesCall:
    """The network on a prepared series. Raises ClassifierError (and ValueError when the
    series has nothing to classify: ``model_input`` None is the caller's to handle)."""
    if prepared.model_input is None:
        raise ValueError(f"series {prepared.series_uid}: nothing prepared to classify")
    prediction = classifier.infer(prepared.model_input)
    decision = decide(
        prediction.probability, prediction.threshold, prepared.physics, classifier.review
    )
    return SeriesCall.of(prediction, decision, prepared)
