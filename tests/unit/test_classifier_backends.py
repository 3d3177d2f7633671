"""Backends and their selection, on a tiny hand-built ONNX model (no torch needed).

``write_tiny_package`` (used by the engine tests too) writes a package whose "network" is
``logit = weight * mean(vessel-window channel) + bias``: bright soft tissue -> contrast. Its
weights file is a placeholder, so only the ONNX backend can run it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import save_file

from ivcontrast.classifier import backends
from ivcontrast.classifier.aggregate import Aggregation
from ivcontrast.classifier.backends import OnnxBackend, cuda_available, select_backend
from ivcontrast.classifier.errors import BackendError
from ivcontrast.classifier.package import (
    CARD_FILE,
    ONNX_FILE,
    WEIGHTS_FILE,
    ModelCard,
    ModelPackage,
    load_package,
    sha256_file,
)
from ivcontrast.classifier.preprocess import PreprocessConfig

TINY_WEIGHT = 40.0
TINY_BIAS = -5.6  # logit 0 at a mean vessel-window value of 0.14


def write_tiny_onnx(path: Path, channels: int, size: int) -> None:
    weights = np.zeros((channels, 1), np.float32)
    weights[min(1, channels - 1), 0] = TINY_WEIGHT
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input", "axes"], ["pooled"], keepdims=0),
            helper.make_node("MatMul", ["pooled", "weights"], ["scaled"]),
            helper.make_node("Add", ["scaled", "bias"], ["logit"]),
        ],
        "tiny",
        [
            helper.make_tensor_value_info(
                "input", TensorProto.FLOAT, ["batch", channels, size, size]
            )
        ],
        [helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["batch", 1])],
        [
            numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
            numpy_helper.from_array(weights, "weights"),
            numpy_helper.from_array(np.array([TINY_BIAS], np.float32), "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, path)


def write_tiny_package(
    dest: Path,
    config: PreprocessConfig | None = None,
    threshold: float = 0.5,
    aggregation: Aggregation | None = None,
) -> ModelPackage:
    config = config or PreprocessConfig(size=32, num_slices=8)
    dest.mkdir(parents=True)
    write_tiny_onnx(dest / ONNX_FILE, config.channels, config.size)
    save_file({"placeholder": np.zeros(1, np.float32)}, str(dest / WEIGHTS_FILE))
    card = ModelCard(
        name="tiny",
        version="0.0.1",
        architecture="efficientnet-b0",
        preprocess=config,
        threshold=threshold,
        aggregation=aggregation or Aggregation("mean"),
        intended_use="tests: a mean-intensity rule, not a network",
        files={name: sha256_file(dest / name) for name in (ONNX_FILE, WEIGHTS_FILE)},
    )
    (dest / CARD_FILE).write_text(card.to_json())
    return load_package(dest)


@pytest.fixture
def tiny(tmp_path: Path) -> ModelPackage:
    return write_tiny_package(tmp_path / "tiny")


def test_onnx_backend_computes_the_model_in_batches(tiny: ModelPackage) -> None:
    x = np.random.default_rng(0).random((37, 3, 32, 32), dtype=np.float32)
    expected = TINY_WEIGHT * x[:, 1].mean(axis=(1, 2)) + TINY_BIAS
    for batch_size in (1, 8, 64):
        logits = OnnxBackend(tiny.onnx_path, threads=1, batch_size=batch_size).predict_logits(x)
        assert logits.shape == (37,)
        np.testing.assert_allclose(logits, expected, atol=1e-4)
    assert OnnxBackend(tiny.onnx_path).predict_logits(x[:0]).shape == (0,)


def test_onnx_backend_checks_its_input(tiny: ModelPackage, tmp_path: Path) -> None:
    backend = OnnxBackend(tiny.onnx_path)
    with pytest.raises(BackendError, match=r"model input of shape \(2, 1, 32, 32\)"):
        backend.predict_logits(np.zeros((2, 1, 32, 32), np.float32))
    with pytest.raises(BackendError, match=r"model input of shape \(3, 32, 32\)"):
        backend.predict_logits(np.zeros((3, 32, 32), np.float32))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a model")
    with pytest.raises(BackendError, match=r"junk\.onnx: ONNX Runtime cannot load it"):
        OnnxBackend(junk)


def test_selection_in_one_place(tiny: ModelPackage, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(select_backend("cpu", tiny, threads=1), OnnxBackend)
    monkeypatch.setattr(backends, "cuda_available", lambda: False)
    assert isinstance(select_backend("auto", tiny), OnnxBackend)
    with pytest.raises(BackendError, match="no CUDA GPU"):
        select_backend("cuda", tiny)
    with pytest.raises(BackendError, match="device 'tpu'"):
        select_backend("tpu", tiny)

    chosen: list[tuple[str, int]] = []

    def fake_torch(package: ModelPackage, device: str, batch_size: int) -> OnnxBackend:
        chosen.append((device, batch_size))
        return OnnxBackend(package.onnx_path)

    monkeypatch.setattr(backends, "cuda_available", lambda: True)
    monkeypatch.setattr(backends.TorchBackend, "from_package", staticmethod(fake_torch))
    select_backend("auto", tiny)
    select_backend("cuda", tiny, batch_size=64)
    assert isinstance(select_backend("cpu", tiny), OnnxBackend)
    assert chosen == [("cuda", backends.DEFAULT_CUDA_BATCH), ("cuda", 64)]


def test_no_gpu_here_means_no_cuda() -> None:
    if any(Path(marker).exists() for marker in backends._NVIDIA_MARKERS):
        pytest.skip("an NVIDIA driver is present")
    assert cuda_available() is False
