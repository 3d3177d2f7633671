"""The classifier: load the package once, then pre-process -> predict -> post-process per series.

Each step is a plain function so it can be tested and scheduled on its own: a worker can run
``Classifier.prepare`` (reading, decoding, preprocessing: CPU) for the next series while
``Classifier.infer`` (the network) runs for this one; ``classifier.pipeline`` does that, and
turns a ``SeriesPrediction`` into the one row shape (``SeriesCall``) every output uses.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ivcontrast.classifier.aggregate import aggregate, sigmoid
from ivcontrast.classifier.backends import Backend, select_backend
from ivcontrast.classifier.dicom_series import DicomSeries
from ivcontrast.classifier.errors import PackageError
from ivcontrast.classifier.package import (
    ModelCard,
    ModelPackage,
    load_package,
    resolve_package_path,
)
from ivcontrast.classifier.physics import PhysicsParams
from ivcontrast.classifier.preprocess import ModelInput, preprocess
from ivcontrast.classifier.review import ReviewPolicy
from ivcontrast.classifier.sources import open_source
from ivcontrast.classifier.volume import SliceSource
from ivcontrast.config import ClassifierSettings
from ivcontrast.vocabulary import Label

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Timings:
    load_s: float  # headers + decoding the chosen slices
    preprocess_s: float  # mask, crop, resize, windows
    inference_s: float  # network + aggregation

    @property
    def total_s(self) -> float:
        return self.load_s + self.preprocess_s + self.inference_s


@dataclass(frozen=True, eq=False)
class SeriesPrediction:
    """One scan's contrast call and the evidence for it."""

    probability: float  # aggregated P(IV contrast)
    contrast: bool  # probability >= threshold
    threshold: float
    aggregation: str
    slice_probabilities: np.ndarray  # (m,) per slice used, ordered by z
    slice_z_mm: np.ndarray  # (m,) their positions along the slice normal
    slice_indices: np.ndarray  # (m,) their indices in the sorted series
    slices_total: int  # slices in the series
    model_name: str
    model_version: str
    model_sha256: str  # of the package's card: identifies the exact package
    backend: str  # the backend's name, for people
    runtime: str  # 'onnxruntime-cpu', 'torch-cuda': the backend's runtime and device
    source: str
    timings: Timings

    @property
    def label(self) -> Label:
        return Label.of(self.contrast)

    @property
    def slices_used(self) -> int:
        return len(self.slice_probabilities)


def predict(backend: Backend, model_input: ModelInput) -> np.ndarray:
    """Slice probabilities (m,) for a prepared input."""
    return sigmoid(backend.predict_logits(model_input.x))


def postprocess(probabilities: np.ndarray, card: ModelCard) -> tuple[float, bool]:
    """The scan probability by the card's aggregation, and the label by its threshold."""
    probability = aggregate(probabilities, card.aggregation)
    return probability, probability >= card.threshold


class Classifier:
    """A model package and a backend, loaded once, classifying many series."""

    def __init__(
        self,
        package: ModelPackage,
        backend: Backend,
        physics: PhysicsParams | None = None,
        review: ReviewPolicy | None = None,
    ) -> None:
        self.package = package
        self.backend = backend
        # The second opinion (None: not measured) and when the two opinions make a review.
        self.physics = physics
        self.review = review or ReviewPolicy(band=package.card.review_band)

    @classmethod
    def from_settings(cls, settings: ClassifierSettings) -> Classifier:
        """The configured package (or the bundled default), verified, on the configured device."""
        path = resolve_package_path(settings.model)
        if settings.model is None and not path.is_dir():
            raise PackageError(
                f"{path}: no bundled default model in this installation; "
                "set classifier.model to a model package directory"
            )
        package = load_package(path, verify=True)
        card = package.card
        if card.needs_site_validation:
            seen = (
                "synthetic CT phantoms only"
                if card.synthetic_only
                else f"phantoms and only {card.real_training_series} real CT series"
            )
            log.warning(
                "model %s %s was trained on %s: validate it on your own labelled CT "
                "(ivcontrast evaluate) before relying on its calls",
                card.name,
                card.version,
                seen,
            )
        backend = select_backend(settings.device, package, settings.threads, settings.batch_size)
        physics = (
            PhysicsParams(threshold_hu=settings.physics_threshold_hu) if settings.physics else None
        )
        band = package.card.review_band if settings.review_band is None else settings.review_band
        return cls(package, backend, physics, ReviewPolicy(band, settings.physics_margin_hu))

    @property
    def card(self) -> ModelCard:
        return self.package.card

    def prepare(self, source: SliceSource, load_seconds: float = 0.0) -> ModelInput:
        """Pre-process: choose and decode slices, mask, crop, resize, window.

        ``load_seconds`` (time spent opening ``source``) is added to the input's read time.
        """
        model_input = preprocess(source, self.card.preprocess)
        return replace(model_input, read_seconds=model_input.read_seconds + load_seconds)

    def infer(self, model_input: ModelInput) -> SeriesPrediction:
        """Predict and post-process a prepared input."""
        t0 = time.perf_counter()
        probabilities = predict(self.backend, model_input)
        probability, contrast = postprocess(probabilities, self.card)
        inference_s = time.perf_counter() - t0
        return SeriesPrediction(
            probability=probability,
            contrast=contrast,
            threshold=self.card.threshold,
            aggregation=str(self.card.aggregation),
            slice_probabilities=probabilities,
            slice_z_mm=model_input.z_mm,
            slice_indices=model_input.slice_indices,
            slices_total=model_input.source_slices,
            model_name=self.card.name,
            model_version=self.card.version,
            model_sha256=self.package.card_sha256,
            backend=self.backend.name,
            runtime=self.backend.runtime,
            source=model_input.source,
            timings=Timings(model_input.read_seconds, model_input.prepare_seconds, inference_s),
        )

    def classify_volume(self, source: SliceSource, load_seconds: float = 0.0) -> SeriesPrediction:
        prediction = self.infer(self.prepare(source, load_seconds))
        log.info(
            "%s: %s (p=%.3f, %d slices) in %.2f s",
            prediction.source,
            prediction.label,
            prediction.probability,
            prediction.slices_used,
            prediction.timings.total_s,
        )
        return prediction

    def classify_series(self, paths: Sequence[PathLike]) -> SeriesPrediction:
        """The files of one DICOM series (any order) -> prediction. The worker's entry point."""
        t0 = time.perf_counter()
        series = DicomSeries.open(paths)
        return self.classify_volume(series, time.perf_counter() - t0)

    def classify_path(self, paths: PathLike | Sequence[PathLike]) -> SeriesPrediction:
        """A NIfTI or NRRD file, a folder with one DICOM series, or DICOM files -> prediction."""
        t0 = time.perf_counter()
        source = open_source(paths)
        return self.classify_volume(source, time.perf_counter() - t0)
