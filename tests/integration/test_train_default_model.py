"""The bundled default model: size budget, an honest card, and the real-scan calls it records.

Skipped where the package is not in the checkout. The real scans are read from
../shared/realct (never copied into the project) and skipped where absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ivcontrast.classifier.backends import OnnxBackend
from ivcontrast.classifier.engine import Classifier
from ivcontrast.classifier.package import DEFAULT_PACKAGE, load_package

REALCT = Path(__file__).resolve().parents[2].parent / "shared" / "realct"
REAL_SCANS = {
    "itkelastix00": REALCT / "itkelastix_thorax_4dct_phase00" / "itkelastix00",
    "example_ct_dicom": REALCT / "ts_upperabd_petct_dicom" / "example_ct_dicom",
    "example_ct.nii.gz": REALCT / "ts_abdpelvis_native" / "example_ct.nii.gz",
}
MODELS = DEFAULT_PACKAGE.parent
pytestmark = pytest.mark.skipif(
    not (DEFAULT_PACKAGE / "card.json").is_file(), reason="no bundled default model"
)


def test_the_models_folder_fits_the_budget() -> None:
    total = sum(p.stat().st_size for p in MODELS.rglob("*") if p.is_file())
    assert total < 25e6, f"{MODELS}: {total / 1e6:.1f} MB"
    package = load_package(DEFAULT_PACKAGE)  # verifies both checksums
    assert package.card.weights_dtype == "float16"


def test_the_card_says_what_the_model_is() -> None:
    card = load_package(DEFAULT_PACKAGE).card
    assert set(card.regions) == {"chest", "headneck"}
    use = card.intended_use.lower()
    assert "synthetic" in use and "patients" in use and "validate" in use
    data = card.training_data
    assert data["command"].startswith("ivcontrast ") and " train " in data["command"]
    assert data["synthetic"]["series"] == data["train"]["series"] + data["validation"]["series"]
    for side in ("train", "validation"):
        assert set(data[side]["by_region"]) == {"chest", "headneck"}
        assert {"none", "arterial", "portal_venous", "delayed"} <= set(data[side]["by_phase"])
    test = card.metrics["test"]
    assert test["scan"]["ci95"]["auc"][0] <= test["scan"]["auc"] <= test["scan"]["ci95"]["auc"][1]
    assert test["data"]["series"] >= 200
    assert all(test["by_region"][r]["n"] >= 100 for r in ("chest", "headneck"))
    # Test seeds never used in training: no test patient among the training ones.
    assert test["data"]["patients"] == test["data"]["series"]


@pytest.mark.skipif(not REALCT.is_dir(), reason=f"{REALCT} not present")
@pytest.mark.slow
def test_the_recorded_real_scan_calls_are_what_the_model_says() -> None:
    package = load_package(DEFAULT_PACKAGE)
    recorded = {s["name"]: s for s in package.card.metrics["real_ct"]["series"]}
    assert set(recorded) == set(REAL_SCANS)
    classifier = Classifier(package, OnnxBackend(package.onnx_path, threads=1))
    for name, path in REAL_SCANS.items():
        prediction = classifier.classify_path(path)
        assert prediction.probability == pytest.approx(recorded[name]["probability"], abs=1e-4)
        assert int(prediction.contrast) == recorded[name]["called"]
    readme = (DEFAULT_PACKAGE / "README.md").read_text(encoding="utf-8")
    for name in REAL_SCANS:
        assert name in readme
    figures = json.dumps(sorted(p.name for p in (DEFAULT_PACKAGE / "figures").glob("*.png")))
    assert "real" in figures


@pytest.mark.slow
def test_a_site_can_fine_tune_the_bundled_model_by_name(tmp_path: Path) -> None:
    import torch

    from ivcontrast.cli import main

    out = tmp_path / "finetune"
    args = ["--data-dir", str(tmp_path / "data"), "train", "--synthetic", "8"]
    args += ["--synthetic-matrix", "64", "--synthetic-slices", "4", "--synthetic-seed", "700"]
    args += ["--init-from", "default", "--freeze-backbone", "--epochs", "1"]
    args += ["--batch-size", "8", "--threads", "1", "--no-export", "--out", str(out)]
    assert main(args) == 0
    card = json.loads(torch.load(out / "best.pt", weights_only=True)["card_json"])
    assert card["training_data"]["init_from"]["name"] == "ivcontrast-default"
    assert card["preprocess"] == load_package(DEFAULT_PACKAGE).card.preprocess.to_dict()


def test_the_node_warns_that_the_bundled_model_has_only_seen_phantoms(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from ivcontrast.config import load_settings

    settings = load_settings(env={}, overrides={"classifier.device": "cpu"})
    with caplog.at_level("WARNING", logger="ivcontrast.classifier.engine"):
        Classifier.from_settings(settings.classifier)
    assert "trained on synthetic CT phantoms only" in caplog.text
