"""Train -> evaluate -> export -> serve, on phantom series small enough for CI.

One tiny run (generated phantoms, 64-pixel matrices, a 32-pixel input) is shared by the tests:
its files, its package loaded by the classifier engine, evaluation on a fresh synth set written
as DICOM, export as a subprocess, resume, and fine-tuning with a frozen backbone.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ivcontrast.classifier.backends import OnnxBackend  # noqa: E402
from ivcontrast.classifier.engine import Classifier  # noqa: E402
from ivcontrast.classifier.package import load_package  # noqa: E402
from ivcontrast.cli import main  # noqa: E402
from ivcontrast.training.loop import Trainer  # noqa: E402

# torch.export's internals warn about their own deprecations on every export.
pytestmark = [pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"), pytest.mark.slow]

TINY = [
    "--synthetic", "16",
    "--synthetic-matrix", "64",
    "--synthetic-slices", "6",
    "--synthetic-seed", "500",
    "--size", "32",
    "--num-slices", "6",
    "--batch-size", "16",
    "--val-fraction", "0.25",
    "--threads", "1",
    "--seed", "3",
]  # fmt: skip


def train(tmp: Path, out: Path, *extra: str) -> int:
    return main(["--data-dir", str(tmp / "data"), "train", *TINY, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("train")


@pytest.fixture(scope="module")
def run_dir(workdir: Path) -> Path:
    out = workdir / "run"
    assert (
        train(
            workdir, out, "--epochs", "2", "--model-version", "9.9.9", "--weights-dtype", "float16"
        )
        == 0
    )
    return out


@pytest.fixture(scope="module")
def test_set(workdir: Path) -> Path:
    """A fresh synth set (seeds never used in training), written as DICOM with a manifest."""
    out = workdir / "testset"
    assert (
        main(
            [
                "synth",
                str(out),
                "-n",
                "6",
                "--seed",
                "90000",
                "--matrix",
                "64",
                "--slices",
                "8",
                "--thickness",
                "5",
                "--spacing",
                "30",
            ]
        )
        == 0
    )
    return out / "manifest.csv"


def test_run_directory(run_dir: Path) -> None:
    names = {p.name for p in run_dir.iterdir()}
    assert {
        "config.json",
        "split.json",
        "timing.json",
        "history.json",
        "history.csv",
        "history.png",
        "last.pt",
        "best.pt",
        "val_predictions.npz",
        "synthetic_manifest.csv",
        "model",
    } <= names
    history = json.loads((run_dir / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    assert all(np.isfinite(row["train_loss"]) and np.isfinite(row["val_loss"]) for row in history)
    with (run_dir / "history.csv").open() as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [1, 2]
    timing = json.loads((run_dir / "timing.json").read_text())
    assert timing["data_cpu_seconds"] > 0 and timing["train_seconds"] > 0
    # The split keeps every patient on one side.
    split = json.loads((run_dir / "split.json").read_text())
    train_patients = {s["patient_id"] for s in split["train"]}
    val_patients = {s["patient_id"] for s in split["validation"]}
    assert train_patients and val_patients and train_patients.isdisjoint(val_patients)
    assert len(split["train"]) + len(split["validation"]) == 16
    with (run_dir / "synthetic_manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 16 and {r["region"] for r in rows} == {"chest", "headneck"}
    assert all(int(r["slices"]) == 6 for r in rows)


def test_card_records_data_threshold_and_command(run_dir: Path) -> None:
    package = load_package(run_dir / "model")
    card = package.card
    assert card.version == "9.9.9" and card.architecture == "efficientnet-b0"
    assert card.weights_dtype == "float16"
    assert card.input_size == 32 and card.preprocess.num_slices == 6
    assert set(card.regions) == {"chest", "headneck"}
    assert "synthetic" in card.intended_use.lower() and "patients" in card.intended_use
    data = card.training_data
    assert data["train"]["series"] + data["validation"]["series"] == 16
    assert set(data["train"]["by_region"]) == {"chest", "headneck"}
    assert data["synthetic"]["seeds"] == [500, 515]
    assert "tag_state" in data["synthetic"]["acquisition"]
    assert (
        data["command"].startswith("ivcontrast --data-dir ") and "--synthetic 16" in data["command"]
    )
    assert data["seed"] == 3
    validation = card.metrics["validation"]
    # The threshold is the Youden-optimal one on the validation scans, recorded as such.
    assert validation["scan"]["youden"]["threshold"] == pytest.approx(card.threshold)
    assert validation["scan"]["n"] == data["validation"]["series"]
    assert len(validation["scan"]["ci95"]["auc"]) == 2
    # Weights are stored once in float16; the ONNX graph and safetensors fit the budget.
    sizes = {p.name: p.stat().st_size for p in (run_dir / "model").iterdir()}
    assert sizes["weights.safetensors"] < 0.55 * sizes["model.onnx"]


def test_package_serves_a_series(run_dir: Path, test_set: Path) -> None:
    package = load_package(run_dir / "model")
    classifier = Classifier(package, OnnxBackend(package.onnx_path, threads=1))
    with test_set.open() as fh:
        folder = test_set.parent / Path(next(csv.DictReader(fh))["folder"]).name
    prediction = classifier.classify_path(folder)
    assert 0.0 <= prediction.probability <= 1.0
    assert prediction.slices_used == 6 and prediction.model_version == "9.9.9"
    assert prediction.threshold == pytest.approx(package.card.threshold)
    # PyTorch on the best checkpoint agrees with the served ONNX model.
    state = torch.load(run_dir / "best.pt", weights_only=True)
    net = package.build_torch_model()
    for name, tensor in net.state_dict().items():
        if tensor.is_floating_point() and "running" not in name:
            torch.testing.assert_close(tensor, state["model"][name].half().float(), rtol=0, atol=0)


def test_evaluate_report_and_plots(run_dir: Path, test_set: Path, workdir: Path) -> None:
    out = workdir / "eval"
    code = main(
        [
            "--data-dir",
            str(workdir / "data"),
            "evaluate",
            str(run_dir / "model"),
            str(test_set),
            "--out",
            str(out),
            "--bootstrap",
            "200",
            "--curves",
            "2",
            "--threads",
            "1",
        ]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    for name in ("roc.png", "calibration.png", "predictions.csv"):
        assert (out / name).stat().st_size > 1000 or name == "predictions.csv"
    assert len(list((out / "curves").glob("*.png"))) == 2
    assert report["data"]["summary"]["series"] == 6 and report["data"]["failed"] == []
    scan = report["scan"]
    assert scan["n"] == 6 and scan["bootstrap"]["samples"] == 200
    assert scan["at_threshold"]["threshold"] == pytest.approx(
        load_package(run_dir / "model").card.threshold
    )
    # The report's numbers follow from its own per-series rows.
    series = report["series"]
    correct = sum(1 for s in series if s["correct"])
    assert scan["at_threshold"]["accuracy"] == pytest.approx(correct / 6)
    assert all(
        s["called"] == int(s["probability"] >= scan["at_threshold"]["threshold"]) for s in series
    )
    assert report["slice"]["n"] == sum(s["slices_used"] for s in series)
    # ContrastBolusAgent: what the synth manifest wrote is what the report read from the DICOM.
    with test_set.open() as fh:
        manifest = {Path(r["folder"]).name: r for r in csv.DictReader(fh)}
    tags = report["tags"]
    assert tags["series_with_dicom_header"] == 6
    states = [manifest[Path(s["path"]).name]["tag_state"] for s in series]
    assert tags["tag_vs_truth"] == {k: states.count(k) for k in ("correct", "missing", "wrong")}
    assert sum(tags["tag_vs_prediction"].values()) == 6
    # A second evaluation reads everything from the slice cache and gives the same report.
    again = workdir / "eval2"
    assert (
        main(
            [
                "--data-dir",
                str(workdir / "data"),
                "evaluate",
                str(run_dir / "model"),
                str(test_set),
                "--out",
                str(again),
                "--bootstrap",
                "200",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    second = json.loads((again / "report.json").read_text())
    assert second["scan"] == report["scan"] and second["slice"] == report["slice"]


def test_export_subprocess_with_test_report(run_dir: Path, workdir: Path, test_set: Path) -> None:
    report = workdir / "eval" / "report.json"
    if not report.exists():
        pytest.skip("needs test_evaluate_report_and_plots")
    out = workdir / "exported"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ivcontrast",
            "export",
            str(run_dir / "best.pt"),
            str(out),
            "--model-version",
            "1.0.0",
            "--report",
            f"test={report}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "model.onnx" in result.stdout
    card = load_package(out).card
    assert card.version == "1.0.0"
    assert card.metrics["test"]["scan"]["n"] == 6 and "validation" in card.metrics
    # A small report keeps its per-series calls (as for the few real scans of the default model).
    recorded = card.metrics["test"]["series"]
    rows = json.loads(report.read_text())["series"]
    assert [r["probability"] for r in recorded] == [r["probability"] for r in rows]
    assert [r["name"] for r in recorded] == [Path(r["path"]).name for r in rows]
    again = subprocess.run(
        [sys.executable, "-m", "ivcontrast", "export", str(run_dir), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 1 and "already exists" in again.stderr


def test_resume_continues_as_the_uninterrupted_run(
    workdir: Path, run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    half = workdir / "half"
    write_history = Trainer._write_history

    def interrupted_after_epoch_1(self: Trainer) -> None:
        write_history(self)
        if len(self.history) == 1:
            raise KeyboardInterrupt  # Ctrl-C once the first epoch is checkpointed

    monkeypatch.setattr(Trainer, "_write_history", interrupted_after_epoch_1)
    assert train(workdir, half, "--epochs", "2", "--no-export") == 130
    monkeypatch.undo()
    assert json.loads((half / "history.json").read_text())[-1]["epoch"] == 1
    assert main(["--data-dir", str(workdir / "data"), "train", "--out", str(half), "--resume"]) == 0
    full = json.loads((run_dir / "history.json").read_text())
    resumed = json.loads((half / "history.json").read_text())
    assert [r["epoch"] for r in resumed] == [1, 2]
    for a, b in zip(full, resumed, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    a = torch.load(run_dir / "last.pt", weights_only=True)["model"]
    b = torch.load(half / "last.pt", weights_only=True)["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)
    # --resume takes the saved options; a changed one is refused.
    assert main(["train", "--out", str(half), "--resume", "--lr", "0.1"]) == 1


def test_fine_tuning_with_a_frozen_backbone_changes_only_the_head(
    run_dir: Path, workdir: Path
) -> None:
    out = workdir / "finetune"
    base = run_dir / "model"
    # The same phantoms (cache hits: the package's preprocessing is the run's); no export.
    code = main(
        [
            "--data-dir",
            str(workdir / "data"),
            "train",
            "--synthetic",
            "16",
            "--synthetic-matrix",
            "64",
            "--synthetic-slices",
            "6",
            "--synthetic-seed",
            "500",
            "--init-from",
            str(base),
            "--freeze-backbone",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--threads",
            "1",
            "--no-export",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert not (out / "model").exists()
    before = load_package(base).build_torch_model().state_dict()
    state = torch.load(out / "best.pt", weights_only=True)
    after = state["model"]
    changed = {
        n
        for n, t in before.items()
        if t.is_floating_point() and not torch.equal(t, after[n].float())
    }
    assert changed == {"_fc.weight", "_fc.bias"}
    card = json.loads(state["card_json"])
    assert card["training_data"]["init_from"]["version"] == "9.9.9"
    assert card["preprocess"] == load_package(base).card.preprocess.to_dict()
