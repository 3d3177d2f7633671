"""The bundled default model: size budget, an honest card, and the real-CT calls it records.

Skipped where the package is not in the checkout. The real scans are read from
../shared/realct (never copied into the project) and skipped where absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ivcontrast.classifier.engine import Classifier
from ivcontrast.classifier.package import DEFAULT_PACKAGE, load_package
from ivcontrast.classifier.pipeline import classify, prepare_dicom, prepare_volume
from ivcontrast.config import load_settings

REALCT = Path(__file__).resolve().parents[2].parent / "shared" / "realct"
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
    assert card.version == "2.0.0" and 0 < card.review_band < 0.5
    use = card.intended_use.lower()
    assert "synthetic" in use and "patients" in use and "validate" in use
    assert "leave-one-patient-out" in use
    data = card.training_data
    assert data["command"].startswith("ivcontrast ") and " train " in data["command"]
    assert data["init_from"]["version"] == "1.1.0"
    assert not card.synthetic_only  # it has seen real CT, and says which
    # The real series it saw are listed by the labels CSV it names; the card's table says
    # which (every one of the ten, and one training-only head CT).
    seen = card.metrics["real_ct_seen"]["series"]
    assert len(seen) == 10
    trained_on = {r["series"] for r in data["real_series"]}
    assert {f"realct/{r['series']}" for r in seen} < trained_on and len(trained_on) == 11
    assert card.real_training_series == 11 and card.needs_site_validation
    test = card.metrics["test"]
    assert test["scan"]["ci95"]["auc"][0] <= test["scan"]["auc"] <= test["scan"]["ci95"]["auc"][1]
    assert test["data"]["series"] >= 100
    assert all(test["by_region"][r]["n"] >= 50 for r in ("chest", "headneck"))
    # Test seeds never used in training: no test patient among the training ones.
    assert test["data"]["patients"] == test["data"]["series"]
    lopo = card.metrics["real_ct_lopo"]
    assert lopo["summary"]["lopo_series"] == 10
    assert {r["series"] for r in lopo["series"]} == {r["series"] for r in seen}


@pytest.mark.skipif(not REALCT.is_dir(), reason=f"{REALCT} not present")
@pytest.mark.slow
def test_the_shipped_model_calls_the_ten_real_series_right_and_none_in_review() -> None:
    """Through the served pipeline (network, physics opinion, review), as the node calls them.

    The shipped model was trained on these series: this checks the package and the pipeline
    against the card's record, not the model's accuracy (the card's real_ct_lopo does that).
    """
    package = load_package(DEFAULT_PACKAGE)
    settings = load_settings(env={}, overrides={"classifier.device": "cpu"})
    classifier = Classifier.from_settings(settings.classifier)
    assert classifier.package.card.version == package.card.version
    for row in package.card.metrics["real_ct_seen"]["series"]:
        path = REALCT / row["series"]
        prepared = (
            prepare_volume(classifier, path)
            if path.is_file()
            else prepare_dicom(classifier, sorted(p for p in path.rglob("*") if p.is_file()))
        )
        call = classify(classifier, prepared)
        assert call.probability == pytest.approx(row["shipped"]["probability"], abs=2e-3)
        assert (call.label, call.review_reasons) == (row["truth"], []), row["series"]
        assert call.physics_hu is not None
    readme = (DEFAULT_PACKAGE / "README.md").read_text(encoding="utf-8")
    for row in package.card.metrics["real_ct_lopo"]["series"]:
        assert row["series"].split("/")[0] in readme


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


def test_the_node_warns_that_the_bundled_model_needs_validation_at_the_site(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = load_settings(env={}, overrides={"classifier.device": "cpu"})
    with caplog.at_level("WARNING", logger="ivcontrast.classifier.engine"):
        Classifier.from_settings(settings.classifier)
    assert "validate it on your own labelled CT" in caplog.text
