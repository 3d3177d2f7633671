"""The engine: pre-process -> predict -> post-process, on DICOM and NIfTI, with a tiny model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from test_classifier_backends import write_tiny_package
from test_classifier_dicom import make_phantom, write_series
from test_classifier_volume import ras_array

from ivcontrast.classifier import engine
from ivcontrast.classifier.aggregate import Aggregation, sigmoid
from ivcontrast.classifier.backends import OnnxBackend
from ivcontrast.classifier.engine import Classifier, postprocess, predict
from ivcontrast.classifier.errors import PackageError, VolumeError
from ivcontrast.classifier.package import ModelPackage
from ivcontrast.classifier.pipeline import classify, prepare_dicom
from ivcontrast.classifier.preprocess import PreprocessConfig
from ivcontrast.config import ClassifierSettings

SPACING = (2.0, 2.0)


def enhanced(hu: np.ndarray) -> np.ndarray:
    """Soft tissue 100 HU brighter: what the tiny model calls contrast."""
    return np.where((hu > -500) & (hu < 200), hu + 100, hu).astype(np.int16)


@pytest.fixture
def package(tmp_path: Path) -> ModelPackage:
    return write_tiny_package(tmp_path / "model", PreprocessConfig(size=32, num_slices=8))


@pytest.fixture
def classifier(package: ModelPackage) -> Classifier:
    return Classifier(package, OnnxBackend(package.onnx_path, threads=1))


def test_dicom_series_to_prediction(classifier: Classifier, tmp_path: Path) -> None:
    hu = make_phantom(n=20)
    plain = classifier.classify_series(write_series(tmp_path / "plain", hu, pixel_spacing=SPACING))
    contrast = classifier.classify_series(
        write_series(tmp_path / "contrast", enhanced(hu), pixel_spacing=SPACING)
    )
    assert (plain.label, contrast.label) == ("no_contrast", "contrast")
    assert plain.probability < 0.5 < contrast.probability
    assert plain.contrast is False and contrast.contrast is True
    assert contrast.slices_used == 8 and contrast.slices_total == 20
    assert np.all(np.diff(contrast.slice_z_mm) > 0)
    assert np.all(np.diff(contrast.slice_indices) > 0)
    assert contrast.probability == pytest.approx(float(np.mean(contrast.slice_probabilities)))
    assert (contrast.model_name, contrast.model_version) == ("tiny", "0.0.1")
    assert contrast.model_sha256 == classifier.package.card_sha256
    assert contrast.backend.startswith("onnxruntime-cpu")
    assert contrast.aggregation == "mean" and contrast.threshold == 0.5
    timings = contrast.timings
    assert timings.load_s > 0 and timings.preprocess_s > 0 and timings.inference_s > 0
    assert timings.total_s == pytest.approx(
        timings.load_s + timings.preprocess_s + timings.inference_s
    )
    again = write_series(tmp_path / "again", enhanced(hu), pixel_spacing=SPACING)
    prepared = prepare_dicom(classifier, again)
    call = classify(classifier, prepared)
    data = json.loads(json.dumps(call.to_dict()))
    assert data["label"] == data["network_label"] == "contrast" and data["review_reasons"] == []
    assert len(data["slice_probabilities"]) == 8
    z, p = data["slice_probabilities"][0]
    assert z == pytest.approx(float(contrast.slice_z_mm[0]), abs=1e-3)
    assert p == pytest.approx(float(contrast.slice_probabilities[0]), abs=1e-6)
    assert data["model_sha256"] == classifier.package.card_sha256
    assert data["runtime"] == "onnxruntime-cpu" and data["tag_status"] == "missing"
    assert data["physics"] is None and data["physics_hu"] is None  # not asked for
    untagged = classify(classifier, dataclasses.replace(prepared, tagged=False))
    assert untagged.to_dict()["tag_status"] is None


def test_nifti_path_to_prediction(classifier: Classifier, tmp_path: Path) -> None:
    path = tmp_path / "ct.nii.gz"
    nib.save(
        nib.Nifti1Image(ras_array(enhanced(make_phantom(n=10))), np.diag([2.0, 2.0, 3.0, 1.0])),
        path,
    )
    prediction = classifier.classify_path(path)
    assert prediction.label == "contrast"
    assert prediction.source == str(path)
    assert prediction.slices_total == 10


def test_steps_compose(classifier: Classifier, tmp_path: Path) -> None:
    from ivcontrast.classifier.dicom_series import DicomSeries

    series = DicomSeries.open(write_series(tmp_path, make_phantom(n=12), pixel_spacing=SPACING))
    model_input = classifier.prepare(series, load_seconds=0.25)
    assert model_input.read_seconds >= 0.25
    probabilities = predict(classifier.backend, model_input)
    np.testing.assert_allclose(
        probabilities, sigmoid(classifier.backend.predict_logits(model_input.x))
    )
    probability, contrast = postprocess(probabilities, classifier.card)
    prediction = classifier.infer(model_input)
    assert prediction.probability == pytest.approx(probability)
    assert prediction.contrast == contrast


def test_threshold_and_aggregation_come_from_the_card(tmp_path: Path) -> None:
    """The same slices: topk_mean sees the enhanced half, the mean is diluted by the rest."""
    hu = make_phantom(n=16)
    mixed = np.concatenate([hu[:8], enhanced(hu[8:])])
    paths = write_series(tmp_path / "series", mixed, pixel_spacing=SPACING)
    results = {}
    for name, aggregation in (
        ("mean", Aggregation("mean")),
        ("topk", Aggregation("topk_mean", k=3)),
    ):
        package = write_tiny_package(
            tmp_path / name, PreprocessConfig(size=32, num_slices=16), aggregation=aggregation
        )
        results[name] = Classifier(package, OnnxBackend(package.onnx_path)).classify_series(paths)
    assert results["topk"].probability > results["mean"].probability
    assert results["topk"].aggregation == "topk_mean(k=3)"
    top3 = np.sort(results["topk"].slice_probabilities)[-3:].mean()
    assert results["topk"].probability == pytest.approx(top3)
    at_threshold = write_tiny_package(tmp_path / "t", threshold=results["mean"].probability)
    assert postprocess(results["mean"].slice_probabilities, at_threshold.card)[1] is True


def test_from_settings(package: ModelPackage, tmp_path: Path) -> None:
    settings = ClassifierSettings(model=package.path, device="cpu", threads=1, batch_size=4)
    classifier = Classifier.from_settings(settings)
    assert classifier.card.name == "tiny"
    assert isinstance(classifier.backend, OnnxBackend)
    with pytest.raises(PackageError, match="not found"):
        Classifier.from_settings(ClassifierSettings(model=tmp_path / "absent"))


def test_no_configured_model_uses_the_bundled_default(
    package: ModelPackage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "resolve_package_path", lambda model: model or package.path)
    assert Classifier.from_settings(ClassifierSettings(device="cpu")).card.name == "tiny"
    monkeypatch.setattr(engine, "resolve_package_path", lambda model: tmp_path / "none")
    with pytest.raises(PackageError, match="no bundled default model"):
        Classifier.from_settings(ClassifierSettings())


def test_a_corrupt_chosen_slice_fails_the_series_naming_the_file(
    classifier: Classifier, tmp_path: Path
) -> None:
    paths = write_series(tmp_path, make_phantom(n=6), pixel_spacing=SPACING)
    broken = paths[2]
    ds = pydicom.dcmread(broken)
    ds.PixelData = ds.PixelData[:10]
    ds.save_as(broken)
    with pytest.raises(VolumeError, match=broken.name):
        classifier.classify_series(paths)
