"""The model package: one directory that says everything needed to serve and audit a model.

::

    <package>/
      model.onnx           the network, opset 18, input "input" (batch, C, S, S) float32,
                           output "logit" (batch, 1): logit of P(IV contrast) per slice
      weights.safetensors  the PyTorch state dict (tensors only: never pickled objects)
      card.json            name, version, architecture, input, preprocessing, aggregation,
                           threshold, regions, training data, metrics, intended use, created,
                           ivcontrast version, and the sha256 of the two files above

``load_package`` verifies the checksums and names the file that fails. ``export_package`` writes
all three into a temporary directory, checks that ONNX Runtime reproduces PyTorch's logits within
1e-4 (relative beyond magnitude 1), and only then moves the directory into place. Loading needs no torch; building the
PyTorch model from a package does.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ivcontrast import __version__
from ivcontrast.classifier.aggregate import Aggregation
from ivcontrast.classifier.errors import PackageError
from ivcontrast.classifier.preprocess import PreprocessConfig

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CARD_FILE = "card.json"
ONNX_FILE = "model.onnx"
WEIGHTS_FILE = "weights.safetensors"
ONNX_INPUT = "input"
ONNX_OUTPUT = "logit"
ONNX_OPSET = 18
EXPORT_TOLERANCE = 1e-4
# A model trained on fewer real series than this says that it needs validating at a site.
SITE_VALIDATED_SERIES = 200
# Where the bundled default model lives (src/ivcontrast/models/default).
DEFAULT_PACKAGE = Path(__file__).resolve().parent.parent / "models" / "default"


@dataclass(frozen=True)
class ModelCard:
    """What a package says about its model. ``files`` is filled in by ``export_package``."""

    name: str
    version: str
    architecture: str
    preprocess: PreprocessConfig
    threshold: float = 0.5
    # Scan probabilities closer than this to the threshold are sent to review (0 = never).
    review_band: float = 0.0
    aggregation: Aggregation = field(default_factory=Aggregation)
    regions: tuple[str, ...] = ()
    intended_use: str = ""
    dropout: float = 0.2
    weights_dtype: Literal["float32", "float16"] = "float32"
    training_data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    ivcontrast_version: str = ""
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256

    def __post_init__(self) -> None:
        object.__setattr__(self, "regions", tuple(self.regions))
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold {self.threshold} not in [0, 1]")
        if not 0.0 <= self.review_band < 0.5:
            raise ValueError(f"review_band {self.review_band} not in [0, 0.5)")
        if self.weights_dtype not in ("float32", "float16"):
            raise ValueError(f"weights_dtype {self.weights_dtype!r}: expected float32 or float16")
        if not self.name or not self.version:
            raise ValueError("a model card needs a name and a version")

    @property
    def input_size(self) -> int:
        return self.preprocess.size

    @property
    def input_channels(self) -> int:
        return self.preprocess.channels

    @property
    def synthetic_only(self) -> bool:
        """Trained on phantoms and nothing else (no real training data recorded)."""
        return bool(self.training_data.get("synthetic")) and not self.training_data.get("sources")

    @property
    def real_training_series(self) -> int:
        """Series from labels files (not phantoms) among the training series."""
        train = self.training_data.get("train", {}).get("series", 0)
        synthetic = self.training_data.get("synthetic", {})
        # Phantoms were split between training and validation unless validation was given.
        in_train = synthetic.get("series", 0) if self.training_data.get("validation_sources") else 0
        if not self.training_data.get("sources"):
            return 0
        return max(0, int(train) - int(in_train)) if synthetic else int(train)

    @property
    def needs_site_validation(self) -> bool:
        """Trained on phantoms, or on too few real series to be trusted at a new site
        without checking it there first (the node says so until a site replaces it)."""
        if not self.training_data.get("synthetic") and not self.training_data.get("sources"):
            return False  # nothing recorded: no claim either way
        return self.synthetic_only or self.real_training_series < SITE_VALIDATED_SERIES

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "name": self.name,
            "version": self.version,
            "architecture": self.architecture,
            "network": {"dropout": self.dropout, "weights_dtype": self.weights_dtype},
            "input": {
                "name": ONNX_INPUT,
                "shape": ["batch", self.input_channels, self.input_size, self.input_size],
                "dtype": "float32",
            },
            "output": {
                "name": ONNX_OUTPUT,
                "shape": ["batch", 1],
                "meaning": "logit of the probability of IV contrast, per slice",
            },
            "preprocess": self.preprocess.to_dict(),
            "aggregation": self.aggregation.to_dict(),
            "threshold": self.threshold,
            "review_band": self.review_band,
            "regions": list(self.regions),
            "intended_use": self.intended_use,
            "training_data": self.training_data,
            "metrics": self.metrics,
            "created": self.created,
            "ivcontrast_version": self.ivcontrast_version,
            "files": {name: {"sha256": digest} for name, digest in sorted(self.files.items())},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Raises ``ValueError`` (or ``KeyError``/``TypeError``) on a malformed card."""
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"card format {data.get('format')!r}: this ivcontrast reads {FORMAT_VERSION}"
            )
        network = data.get("network", {})
        card = cls(
            name=str(data["name"]),
            version=str(data["version"]),
            architecture=str(data["architecture"]),
            preprocess=PreprocessConfig.from_dict(data["preprocess"]),
            threshold=float(data["threshold"]),
            review_band=float(data.get("review_band", 0.0)),
            aggregation=Aggregation.from_dict(data["aggregation"]),
            regions=tuple(str(r) for r in data.get("regions", ())),
            intended_use=str(data.get("intended_use", "")),
            dropout=float(network.get("dropout", 0.2)),
            weights_dtype=network.get("weights_dtype", "float32"),
            training_data=dict(data.get("training_data", {})),
            metrics=dict(data.get("metrics", {})),
            created=str(data.get("created", "")),
            ivcontrast_version=str(data.get("ivcontrast_version", "")),
            files={name: str(entry["sha256"]) for name, entry in data.get("files", {}).items()},
        )
        shape = data.get("input", {}).get("shape")
        expected = ["batch", card.input_channels, card.input_size, card.input_size]
        if shape is not None and shape != expected:
            raise ValueError(f"input shape {shape} does not match the preprocessing ({expected})")
        return card

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"


@dataclass(frozen=True)
class ModelPackage:
    """A package on disk, loaded (and by default verified) once per process."""

    path: Path
    card: ModelCard
    card_sha256: str  # identifies this exact package (the card holds the other files' digests)

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_FILE

    @property
    def weights_path(self) -> Path:
        return self.path / WEIGHTS_FILE

    def build_torch_model(self) -> nn.Module:
        """The PyTorch network with the package's weights, in eval mode (needs torch)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from ivcontrast.classifier.networks import build_network, exportable

        net = build_network(self.card.architecture, self.card.input_channels, self.card.dropout)
        try:
            state = load_file(self.weights_path)
            state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
            net.load_state_dict(state, strict=True)
        except (SafetensorError, RuntimeError, OSError) as exc:
            raise PackageError(f"{self.weights_path}: cannot load weights: {exc}") from exc
        return exportable(net).eval()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_package_path(model: Path | None) -> Path:
    """The configured package, or the bundled default when none is configured."""
    return DEFAULT_PACKAGE if model is None else Path(model)


def load_package(path: str | os.PathLike[str], verify: bool = True) -> ModelPackage:
    """Read a package's card and, with ``verify``, check every file against its sha256."""
    root = Path(path)
    card_path = root / CARD_FILE
    if not root.is_dir():
        raise PackageError(f"{root}: model package directory not found")
    try:
        raw = card_path.read_bytes()
        card = ModelCard.from_dict(json.loads(raw))
    except FileNotFoundError:
        raise PackageError(f"{card_path}: missing") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise PackageError(f"{card_path}: not a valid model card: {exc}") from exc
    for name in (ONNX_FILE, WEIGHTS_FILE):
        file = root / name
        if not file.is_file():
            raise PackageError(f"{file}: missing")
        if name not in card.files:
            raise PackageError(f"{card_path}: no checksum for {name}")
        if verify:
            actual = sha256_file(file)
            if actual != card.files[name]:
                raise PackageError(
                    f"{file}: sha256 {actual} does not match the card's {card.files[name]}"
                )
    package = ModelPackage(path=root, card=card, card_sha256=hashlib.sha256(raw).hexdigest())
    log.info(
        "model package %s %s (%s, %d px, %d channels) from %s%s",
        card.name,
        card.version,
        card.architecture,
        card.input_size,
        card.input_channels,
        root,
        "" if verify else " (checksums not verified)",
    )
    return package


def export_package(
    model: nn.Module, card: ModelCard, dest: str | os.PathLike[str], overwrite: bool = False
) -> ModelPackage:
    """Write ``model`` (a ``build_network`` network) and ``card`` as a package at ``dest``.

    The model is exported as it is (copied; the original is not changed). With
    ``card.weights_dtype == "float16"`` parameters are rounded to float16 first and stored so,
    halving the weights file; the ONNX graph is made from the same rounded values, so both
    still agree. Raises ``PackageError`` if ONNX Runtime and PyTorch disagree by more than 1e-4
    (``logit_error``).
    """
    import torch
    from safetensors.torch import save_file

    from ivcontrast.classifier.networks import exportable

    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise PackageError(f"{dest}: already exists (pass overwrite=True to replace it)")
    net = exportable(copy.deepcopy(model).cpu().float().eval())
    param_names = {name for name, _ in net.named_parameters()}
    if card.weights_dtype == "float16":
        with torch.no_grad():
            for param in net.parameters():
                param.copy_(param.half().float())
    state = {}
    for name, tensor in net.state_dict().items():
        tensor = tensor.detach().contiguous()
        if card.weights_dtype == "float16" and name in param_names:
            tensor = tensor.half()
        state[name] = tensor

    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"architecture": card.architecture})
        _export_onnx(net, card, tmp / ONNX_FILE)
        _check_onnx(net, card, tmp / ONNX_FILE)
        final = replace(
            card,
            created=card.created or datetime.now(UTC).isoformat(timespec="seconds"),
            ivcontrast_version=__version__,
            files={name: sha256_file(tmp / name) for name in (ONNX_FILE, WEIGHTS_FILE)},
        )
        (tmp / CARD_FILE).write_text(final.to_json(), encoding="utf-8")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log.info("exported model package %s %s to %s", card.name, card.version, dest)
    return load_package(dest)


def _export_onnx(net: nn.Module, card: ModelCard, path: Path) -> None:
    import torch

    # Batch 2 in the example, so the exporter cannot specialise the batch axis to 1.
    example = torch.zeros(2, card.input_channels, card.input_size, card.input_size)
    batch = torch.export.Dim("batch", min=1, max=65536)
    # The exporter's graph passes log every step at INFO, and its op registry warns that
    # torchvision (which we do not use) is missing; keep both for DEBUG.
    quiet = {
        "onnx_ir": logging.WARNING,
        "onnxscript": logging.WARNING,
        "torch.onnx._internal.exporter._registration": logging.ERROR,
    }
    loggers = [logging.getLogger(name) for name in quiet]
    levels = [logger.level for logger in loggers]
    if not log.isEnabledFor(logging.DEBUG):
        for logger, level in zip(loggers, quiet.values(), strict=True):
            logger.setLevel(level)
    try:
        torch.onnx.export(
            net,
            (example,),
            str(path),
            dynamo=True,
            opset_version=ONNX_OPSET,
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            dynamic_shapes=({0: batch},),
            external_data=False,
            verbose=False,
        )
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _check_onnx(net: nn.Module, card: ModelCard, path: Path) -> None:
    import onnxruntime as ort
    import torch

    rng = np.random.default_rng(0)
    x = rng.random((3, card.input_channels, card.input_size, card.input_size), dtype=np.float32)
    with torch.inference_mode():
        expected = net(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run([ONNX_OUTPUT], {ONNX_INPUT: x})[0]
    if actual.shape != expected.shape:
        raise PackageError(f"{path}: ONNX output shape {actual.shape} != PyTorch {expected.shape}")
    error = float(np.max(logit_error(actual, expected)))
    if error > EXPORT_TOLERANCE:
        raise PackageError(
            f"{path}: ONNX Runtime differs from PyTorch by {error:.2e} (limit {EXPORT_TOLERANCE:g})"
        )
    log.debug("ONNX export check: ONNX Runtime vs PyTorch logit error %.2e", error)


def logit_error(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """|actual - expected|, relative where |expected| > 1.

    Float32 kernels differ by ~1e-5 of a logit's magnitude after ~80 layers (measured: MLAS vs
    PyTorch, random inputs), so a logit of 30 cannot match to 1e-4 absolute, and need not: the
    probability it gives matches to far better than that.
    """
    return np.abs(actual - expected) / np.maximum(1.0, np.abs(expected))
