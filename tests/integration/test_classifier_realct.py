"""The classifier on real files: the real CT scans in ../shared/realct (skipped when absent),
and a whole package served by ONNX Runtime in a fresh process that cannot import torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ivcontrast.classifier.preprocess import PreprocessConfig, preprocess
from ivcontrast.classifier.sources import open_source

REALCT = Path(__file__).resolve().parents[2].parent / "shared" / "realct"
THORAX = REALCT / "itkelastix_thorax_4dct_phase00" / "itkelastix00"
UPPER_ABDOMEN = REALCT / "ts_upperabd_petct_dicom" / "example_ct_dicom"
ABDOMEN_NIFTI = REALCT / "ts_abdpelvis_native" / "example_ct.nii.gz"
needs_realct = pytest.mark.skipif(not REALCT.is_dir(), reason=f"{REALCT} not present")
# torch.export's internals warn about their own deprecations on every export.
pytestmark = [pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"), pytest.mark.slow]


def info(folder: Path) -> dict:
    return json.loads((folder.parent / "info.json").read_text())


def disc_stats(
    source, centre_xy: list[int], radius_mm: float, slices: list[int]
) -> tuple[int, float]:
    """Pixel count and mean HU in a disc (column, row) over ``slices`` of the sorted stack."""
    hu = source.read(slices)
    spacing = source.geometry.pixel_spacing
    rows, cols = np.mgrid[: hu.shape[1], : hu.shape[2]]
    disc = ((rows - centre_xy[1]) * spacing[0]) ** 2 + (
        (cols - centre_xy[0]) * spacing[1]
    ) ** 2 <= radius_mm**2
    values = hu[:, disc]
    return values.size, float(values.mean())


def spine_is_posterior(source) -> bool:
    """Bone lies behind the body's centre in a mid slice (rows run anterior -> posterior)."""
    hu = source.read([source.geometry.n_slices // 2])[0]
    body_rows = np.nonzero(hu > -500)[0]
    bone_rows = np.nonzero(hu > 300)[0]
    return bool(bone_rows.mean() > body_rows.mean())


@needs_realct
def test_thorax_dicom_blood_pool_hu() -> None:
    source = open_source(THORAX)
    roi = info(THORAX)["roi_stats_HU"]["blood_pool_disc"]
    assert source.geometry.n_slices == 141
    assert source.geometry.slice_spacing == pytest.approx(2.0)
    count, mean = disc_stats(
        source,
        roi["center_xy_LPSarray"],
        roi["radius_mm"],
        list(range(roi["slices"][0], roi["slices"][1] + 1)),
    )
    assert count == roi["n"]
    assert mean == pytest.approx(roi["mean"], abs=0.5)  # reversed slice order gives 31.0
    assert spine_is_posterior(source)


@needs_realct
def test_upper_abdomen_jpeg2000_aorta_and_liver_hu() -> None:
    source = open_source(UPPER_ABDOMEN)
    assert str(source.headers[0].transfer_syntax) == "1.2.840.10008.1.2.4.90"  # JPEG 2000 lossless
    stats = info(UPPER_ABDOMEN)["roi_stats_HU"]
    blood = stats["blood_pool_disc"]
    _, aorta = disc_stats(source, blood["center_xy_LPSarray"], blood["radius_mm"], list(range(20)))
    _, liver = disc_stats(
        source, stats["liver"]["center_xy_LPSarray"], stats["liver"]["radius_mm"], list(range(20))
    )
    assert aorta == pytest.approx(blood["mean"], abs=0.5)
    assert liver == pytest.approx(stats["liver"]["mean"], abs=0.5)
    assert source.attributes["ContrastBolusAgent"] == "APPLIED"
    assert spine_is_posterior(source)


@needs_realct
def test_abdomen_nifti_hu_distribution() -> None:
    source = open_source(ABDOMEN_NIFTI)
    expected = json.loads((ABDOMEN_NIFTI.parent / "info.json").read_text())
    assert source.geometry.n_slices == expected["shape_xyz"][2]
    hu = source.read(range(source.geometry.n_slices))
    assert np.percentile(hu, 99) == pytest.approx(expected["hu_p99"], abs=5)
    assert np.percentile(hu, 1) == pytest.approx(expected["hu_p1"], abs=15)
    assert spine_is_posterior(source)


@needs_realct
@pytest.mark.parametrize(
    "path", [THORAX, UPPER_ABDOMEN, ABDOMEN_NIFTI], ids=["thorax", "upper-abdomen", "nifti"]
)
def test_real_scans_preprocess_plausibly(path: Path) -> None:
    source = open_source(path)
    config = PreprocessConfig()
    model_input = preprocess(source, config)
    assert model_input.n_slices == min(config.num_slices, source.geometry.n_slices)
    assert model_input.x.shape[1:] == (3, config.size, config.size)
    assert 0.0 <= model_input.x.min() and model_input.x.max() <= 1.0
    # Adult trunk cross-sections: 300-1,500 cm2, cropped to 1.5-4 mm per input pixel.
    assert np.all((model_input.body_area_mm2 > 3e4) & (model_input.body_area_mm2 < 1.5e5))
    assert np.all((model_input.pixel_mm > 1.5) & (model_input.pixel_mm < 4.0))
    # Air surrounds the body: the corners of every input are black in every window.
    assert model_input.x[:, :, :3, :3].max() == 0.0


@pytest.fixture(scope="module")
def served_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch")
    from ivcontrast.classifier.networks import build_network
    from ivcontrast.classifier.package import ModelCard, export_package

    torch.manual_seed(0)
    card = ModelCard(
        name="integration",
        version="0.0.1",
        architecture="efficientnet-b0",
        preprocess=PreprocessConfig(),
        intended_use="tests only: random weights",
    )
    dest = tmp_path_factory.mktemp("served") / "model"
    export_package(build_network("efficientnet-b0", card.input_channels), card, dest)
    return dest


SERVE_WITHOUT_TORCH = """
import json, sys
sys.modules["torch"] = None  # any import of torch now fails
from ivcontrast.classifier.engine import Classifier
from ivcontrast.classifier.pipeline import classify, prepare_volume
from ivcontrast.config import ClassifierSettings
classifier = Classifier.from_settings(ClassifierSettings(model=sys.argv[1], device="auto", threads=2))
print(json.dumps(classify(classifier, prepare_volume(classifier, sys.argv[2])).to_dict()))
"""


def serve(package: Path, target: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", SERVE_WITHOUT_TORCH, str(package), str(target)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_onnx_serving_needs_no_torch(served_package: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:128, :128]
    body = ((rows - 64) / 45.0) ** 2 + ((cols - 64) / 55.0) ** 2 <= 1
    volume = np.where(body, 40.0, -1000.0)[..., None] + rng.normal(0, 10, (128, 128, 40))
    path = tmp_path / "phantom.nii.gz"
    nib.save(nib.Nifti1Image(volume.astype(np.int16), np.diag([3.0, 3.0, 5.0, 1.0])), path)
    result = serve(served_package, path)
    assert result["backend"].startswith("onnxruntime-cpu")
    assert result["slices_used"] == 32 and result["slices_total"] == 40
    assert 0.0 <= result["probability"] <= 1.0
    assert result["label"] in ("contrast", "no_contrast")
    assert result["model_name"] == "integration"


@needs_realct
def test_real_thorax_served_without_torch(served_package: Path) -> None:
    result = serve(served_package, THORAX)
    assert result["slices_used"] == 32 and result["slices_total"] == 141
    z = [z for z, _ in result["slice_probabilities"]]
    assert z == sorted(z) and z[0] > -164.5 and z[-1] < 115.5
