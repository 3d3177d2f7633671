"""Inference backends, and the one place that chooses between them.

- ``OnnxBackend``: ONNX Runtime on the CPU (4.5x faster than PyTorch eager for EfficientNet on
  2 cores, FACTS.md), a fixed number of intra-op threads, sequential execution, batches.
- ``TorchBackend``: PyTorch, for CUDA (batched, bf16 autocast, channels-last); also runs on the
  CPU in fp32, which the tests use to compare it with ONNX Runtime.

``select_backend`` maps ``auto|cpu|cuda`` to one of them. ``auto`` takes CUDA only when an NVIDIA
driver is visible and torch sees a GPU; on a machine without one it never imports torch.

A backend carries its device (``cpu`` or ``cuda``), its ``runtime`` (``onnxruntime-cpu``,
``torch-cuda``: what a result records as its device) and the ``prefetch`` plan that suits it,
so nothing downstream guesses them again from its name.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ivcontrast.classifier.errors import BackendError
from ivcontrast.classifier.package import ONNX_INPUT, ONNX_OUTPUT, ModelPackage
from ivcontrast.vocabulary import DEVICES, DeviceName

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

DEFAULT_CPU_BATCH = 32
DEFAULT_CUDA_BATCH = 256
# Any of these exists where an NVIDIA GPU is usable (bare metal, containers, WSL2).
_NVIDIA_MARKERS = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/dxg")


@dataclass(frozen=True)
class PrefetchPlan:
    """How many threads read and preprocess series ahead, and how many series are in flight."""

    threads: int
    depth: int


def prefetch_plan(device: DeviceName, cpus: int | None = None) -> PrefetchPlan:
    """The plan for a backend on ``device``.

    On the CPU the network already uses every core: one preparing thread and one series
    ahead keep the cores busy without oversubscribing them. On a GPU the CPU only prepares,
    so most cores do, with a couple of series more in flight than threads.
    """
    if device == "cuda":
        threads = max(2, min(8, (cpus or os.cpu_count() or 2) - 1))
        return PrefetchPlan(threads, threads + 2)
    return PrefetchPlan(1, 2)


class Backend(Protocol):
    """Runs the network: (N, C, S, S) float32 in, (N,) logits out."""

    name: str  # for people: 'onnxruntime-cpu (2 threads)', 'torch-cuda (NVIDIA H100, bf16)'
    device: DeviceName  # 'cpu' or 'cuda', never 'auto'
    runtime: str  # 'onnxruntime-cpu', 'torch-cuda', 'torch-cpu': a result's device column
    prefetch: PrefetchPlan

    def predict_logits(self, x: np.ndarray) -> np.ndarray: ...


def _check_input(x: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    if x.ndim != 4 or tuple(x.shape[1:]) != shape:
        raise BackendError(
            f"model input of shape {x.shape}; the model takes (N, {', '.join(map(str, shape))})"
        )
    return np.ascontiguousarray(x, dtype=np.float32)


class OnnxBackend:
    """ONNX Runtime on the CPU."""

    def __init__(
        self, onnx_path: Path, threads: int = 0, batch_size: int = DEFAULT_CPU_BATCH
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0 = ONNX Runtime's default: one per core
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads would spin on the cores that decode and preprocess the next series.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                str(onnx_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own unexported exception types
            raise BackendError(f"{onnx_path}: ONNX Runtime cannot load it: {exc}") from exc
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != ONNX_INPUT:
            raise BackendError(f"{onnx_path}: expected one input named {ONNX_INPUT!r}")
        self._shape = tuple(int(v) for v in inputs[0].shape[1:])
        self._batch_size = max(1, batch_size)
        self.device: DeviceName = "cpu"
        self.runtime = "onnxruntime-cpu"
        self.prefetch = prefetch_plan(self.device)
        self.name = f"{self.runtime} ({threads or 'all'} threads)"

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        x = _check_input(x, self._shape)  # type: ignore[arg-type]
        out = [
            self._session.run([ONNX_OUTPUT], {ONNX_INPUT: x[i : i + self._batch_size]})[0]
            for i in range(0, len(x), self._batch_size)
        ]
        return np.concatenate(out).reshape(-1) if out else np.empty(0, dtype=np.float32)


class TorchBackend:
    """PyTorch inference: bf16 autocast and channels-last on CUDA, plain fp32 on the CPU."""

    def __init__(
        self,
        model: nn.Module,
        input_shape: tuple[int, int, int],
        device: str = "cuda",
        batch_size: int = DEFAULT_CUDA_BATCH,
    ) -> None:
        import torch

        self._torch = torch
        self._device = torch.device(device)
        self._cuda = self._device.type == "cuda"
        if self._cuda and not torch.cuda.is_available():
            raise BackendError("PyTorch sees no CUDA device")
        model = model.eval().to(self._device)
        if self._cuda:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self._model = model
        self._shape = input_shape
        self._batch_size = max(1, batch_size)
        where = torch.cuda.get_device_name(self._device) if self._cuda else "cpu"
        self.device: DeviceName = "cuda" if self._cuda else "cpu"
        self.runtime = f"torch-{self.device}"
        self.prefetch = prefetch_plan(self.device)
        self.name = f"{self.runtime} ({where}{', bf16' if self._cuda else ''})"

    @classmethod
    def from_package(
        cls, package: ModelPackage, device: str = "cuda", batch_size: int = DEFAULT_CUDA_BATCH
    ) -> TorchBackend:
        card = package.card
        shape = (card.input_channels, card.input_size, card.input_size)
        return cls(package.build_torch_model(), shape, device, batch_size)

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = _check_input(x, self._shape)
        out: list[Any] = []
        with (
            torch.inference_mode(),
            torch.autocast("cuda", dtype=torch.bfloat16, enabled=self._cuda),
        ):
            for i in range(0, len(x), self._batch_size):
                batch = torch.from_numpy(x[i : i + self._batch_size]).to(self._device)
                if self._cuda:
                    batch = batch.contiguous(memory_format=torch.channels_last)
                out.append(self._model(batch).float().cpu())
        return torch.cat(out).numpy().reshape(-1) if out else np.empty(0, dtype=np.float32)


def cuda_available() -> bool:
    """True when torch is installed and sees a CUDA GPU; no torch import without an NVIDIA driver."""
    if not any(Path(marker).exists() for marker in _NVIDIA_MARKERS):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def select_backend(
    device: str, package: ModelPackage, threads: int = 0, batch_size: int = 0
) -> Backend:
    """The backend for ``device`` ('auto', 'cpu' or 'cuda'); ``batch_size`` 0 = the default.

    'cpu' is ONNX Runtime; 'cuda' is PyTorch on the GPU and fails without one; 'auto' is CUDA
    where available, else ONNX Runtime.
    """
    if device not in DEVICES:
        raise BackendError(f"device {device!r}: expected auto, cpu or cuda")
    use_cuda = device != "cpu" and cuda_available()
    if device == "cuda" and not use_cuda:
        raise BackendError(
            "device 'cuda': no CUDA GPU visible to PyTorch (needs an NVIDIA driver and "
            "ivcontrast[train] with a CUDA build of torch)"
        )
    if use_cuda:
        backend: Backend = TorchBackend.from_package(
            package, "cuda", batch_size or DEFAULT_CUDA_BATCH
        )
    else:
        backend = OnnxBackend(package.onnx_path, threads, batch_size or DEFAULT_CPU_BATCH)
    log.info("inference backend: %s (device=%s)", backend.name, device)
    return backend
