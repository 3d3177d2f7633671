"""Networks and the model package: export, ONNX vs PyTorch agreement, verified loading."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ivcontrast.classifier.aggregate import Aggregation, sigmoid  # noqa: E402
from ivcontrast.classifier.backends import OnnxBackend, TorchBackend  # noqa: E402
from ivcontrast.classifier.errors import PackageError  # noqa: E402
from ivcontrast.classifier.networks import ARCHITECTURES, build_network, exportable  # noqa: E402
from ivcontrast.classifier.package import (  # noqa: E402
    ModelCard,
    ModelPackage,
    export_package,
    load_package,
    logit_error,
    sha256_file,
)
from ivcontrast.classifier.preprocess import PreprocessConfig  # noqa: E402

SIZE = 64
# torch.export's internals warn about their own deprecations on every export.
pytestmark = [pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"), pytest.mark.slow]


def varied_inputs(n: int, channels: int = 3, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """Random images of different brightness and contrast, so the logits differ per image."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.1, 1.0, (n, 1, 1, 1))
    offset = rng.uniform(0.0, 0.5, (n, 1, 1, 1))
    return (rng.random((n, channels, size, size)) * scale + offset).astype(np.float32)


def calibrated_network(arch: str = "efficientnet-b0", channels: int = 3) -> torch.nn.Module:
    """A random network whose outputs depend on the input, at the scale of a trained one.

    With fresh batch-norm statistics (mean 0, variance 1) the activations vanish and every input
    gives the same logit, which would make any comparison pass: one batch sets real statistics.
    MONAI initialises the head with weights of +-1 over 1280 features (logits in the hundreds);
    a trained head is far smaller, so it gets N(0, 0.01).
    """
    torch.manual_seed(0)
    net = build_network(arch, channels)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
            module.reset_running_stats()
    net.train()
    with torch.no_grad():
        net(torch.from_numpy(varied_inputs(64, channels, seed=1)))
        net._fc.weight.normal_(0.0, 0.01)
    return net.eval()


def make_card(**changes: object) -> ModelCard:
    fields: dict[str, object] = {
        "name": "unit-test-model",
        "version": "1.2.3",
        "architecture": "efficientnet-b0",
        "preprocess": PreprocessConfig(size=SIZE, num_slices=8),
        "threshold": 0.4,
        "aggregation": Aggregation("mean"),
        "regions": ("head_neck", "chest"),
        "intended_use": "unit tests only; random weights",
        "training_data": {"series": 0},
        "metrics": {"scan_auc": None},
    }
    fields.update(changes)
    return ModelCard(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, ModelPackage]:
    net = calibrated_network()
    package = export_package(net, make_card(), tmp_path_factory.mktemp("pkg") / "model")
    return net, package


def test_onnx_runtime_and_torch_agree_within_1e_4(
    exported: tuple[torch.nn.Module, ModelPackage],
) -> None:
    net, package = exported
    x = varied_inputs(7, seed=5)
    with torch.inference_mode():
        reference = exportable(net)(torch.from_numpy(x)).numpy().ravel()
    assert np.ptp(reference) > 0.1  # the inputs give different logits: the check means something
    onnx_logits = OnnxBackend(package.onnx_path, threads=2, batch_size=3).predict_logits(x)
    torch_logits = TorchBackend.from_package(package, device="cpu").predict_logits(x)
    assert np.max(np.abs(onnx_logits - reference)) <= 1e-4
    assert np.max(np.abs(torch_logits - reference)) <= 1e-4
    single = OnnxBackend(package.onnx_path).predict_logits(x[:1])
    assert single.shape == (1,) and abs(single[0] - reference[0]) <= 1e-4
    # Uniform noise images lie far from the calibration data: large logits, agreeing to 1e-4
    # of their magnitude, and probabilities to 1e-4.
    noise = np.random.default_rng(3).random((4, 3, SIZE, SIZE), dtype=np.float32)
    with torch.inference_mode():
        expected = exportable(net)(torch.from_numpy(noise)).numpy().ravel()
    actual = OnnxBackend(package.onnx_path).predict_logits(noise)
    assert np.max(logit_error(actual, expected)) <= 1e-4
    assert np.max(np.abs(sigmoid(actual) - sigmoid(expected))) <= 1e-4


def test_card_records_everything(exported: tuple[torch.nn.Module, ModelPackage]) -> None:
    _, package = exported
    data = json.loads((package.path / "card.json").read_text())
    assert data["architecture"] == "efficientnet-b0"
    assert data["input"]["shape"] == ["batch", 3, SIZE, SIZE]
    assert data["preprocess"]["size"] == SIZE and data["preprocess"]["num_slices"] == 8
    assert data["aggregation"] == {"method": "mean", "k": 8}
    assert data["threshold"] == 0.4
    assert data["regions"] == ["head_neck", "chest"]
    assert data["intended_use"].startswith("unit tests only")
    assert data["created"] and data["ivcontrast_version"]
    for name in ("model.onnx", "weights.safetensors"):
        assert data["files"][name]["sha256"] == sha256_file(package.path / name)
    assert ModelCard.from_dict(data).to_dict() == data
    assert len(package.card_sha256) == 64


def test_tampered_files_are_named(
    exported: tuple[torch.nn.Module, ModelPackage], tmp_path: Path
) -> None:
    _, package = exported
    for name in ("model.onnx", "weights.safetensors"):
        copy = tmp_path / name
        shutil.copytree(package.path, copy)
        with (copy / name).open("ab") as fh:
            fh.write(b"\0")
        with pytest.raises(PackageError, match=rf"{name}: sha256 [0-9a-f]+ does not match"):
            load_package(copy)
        assert load_package(copy, verify=False).card.name == "unit-test-model"


def test_malformed_packages(exported: tuple[torch.nn.Module, ModelPackage], tmp_path: Path) -> None:
    _, package = exported
    with pytest.raises(PackageError, match="directory not found"):
        load_package(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    shutil.copytree(package.path, broken)
    card = json.loads((broken / "card.json").read_text())

    (broken / "card.json").write_text("{not json")
    with pytest.raises(PackageError, match=r"card\.json: not a valid model card"):
        load_package(broken)
    (broken / "card.json").write_text(json.dumps({**card, "format": 99}))
    with pytest.raises(PackageError, match="card format 99"):
        load_package(broken)
    bad_input = {**card, "input": {**card["input"], "shape": ["batch", 1, SIZE, SIZE]}}
    (broken / "card.json").write_text(json.dumps(bad_input))
    with pytest.raises(PackageError, match="does not match the preprocessing"):
        load_package(broken)
    (broken / "card.json").write_text(json.dumps(card))
    (broken / "model.onnx").unlink()
    with pytest.raises(PackageError, match=r"model\.onnx: missing"):
        load_package(broken)
    (broken / "card.json").unlink()
    with pytest.raises(PackageError, match=r"card\.json: missing"):
        load_package(broken)


def test_export_does_not_overwrite_by_accident(
    exported: tuple[torch.nn.Module, ModelPackage],
) -> None:
    net, package = exported
    with pytest.raises(PackageError, match="already exists"):
        export_package(net, make_card(), package.path)


def test_float16_weights_halve_the_file_and_still_agree(
    exported: tuple[torch.nn.Module, ModelPackage], tmp_path: Path
) -> None:
    net, full = exported
    half = export_package(net, make_card(weights_dtype="float16"), tmp_path / "half")
    assert half.weights_path.stat().st_size < 0.6 * full.weights_path.stat().st_size
    x = varied_inputs(5, seed=9)
    onnx_logits = OnnxBackend(half.onnx_path).predict_logits(x)
    torch_logits = TorchBackend.from_package(half, device="cpu").predict_logits(x)
    assert np.max(np.abs(onnx_logits - torch_logits)) <= 1e-4
    full_logits = OnnxBackend(full.onnx_path).predict_logits(x)
    assert np.max(np.abs(onnx_logits - full_logits)) < 0.05 * max(1.0, np.abs(full_logits).max())
    # The caller's network is left as it was (float32 parameters, training swish untouched).
    assert all(p.dtype == torch.float32 for p in net.parameters())


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_builds_and_gives_one_logit(arch: str) -> None:
    net = build_network(arch, in_channels=2, dropout=0.3).eval()
    with torch.inference_mode():
        out = net(torch.zeros(2, 2, 64, 64))
    assert out.shape == (2, 1)
    assert net._dropout.p == 0.3


def test_network_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="architecture 'resnet18'"):
        build_network("resnet18")
    with pytest.raises(ValueError, match="dropout"):
        build_network("efficientnet-b0", dropout=1.5)


def test_a_card_knows_when_its_model_has_only_seen_phantoms() -> None:
    assert not make_card().synthetic_only  # nothing recorded: no claim either way
    phantoms = {"synthetic": {"series": 480, "seeds": [1000000, 1000479]}}
    assert make_card(training_data=phantoms).synthetic_only
    site = {**phantoms, "sources": [{"path": "labels.csv", "sha256": "0" * 64}]}
    assert not make_card(training_data=site).synthetic_only


def test_a_card_says_when_its_model_needs_validating_at_a_site() -> None:
    assert not make_card().needs_site_validation  # nothing recorded: no claim either way
    phantoms = {"train": {"series": 407}, "synthetic": {"series": 480}}
    assert make_card(training_data=phantoms).needs_site_validation  # phantoms only
    labels = [{"path": "labels.csv", "sha256": "0" * 64}]
    few = {
        "train": {"series": 211},
        "synthetic": {"series": 200},
        "sources": labels,
        "validation_sources": labels,
    }
    card = make_card(training_data=few)
    assert card.real_training_series == 11 and card.needs_site_validation
    site = {"train": {"series": 900}, "sources": labels}
    assert make_card(training_data=site).real_training_series == 900
    assert not make_card(training_data=site).needs_site_validation
