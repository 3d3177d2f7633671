"""Model packages and spooled series for the classify tests (handler, CLI, end to end).

``write_rule_package`` writes a real model package (ONNX graph, weights file, card with
checksums) whose "network" is a fixed rule, ``logit = weight * mean(channel 1) + bias``:
bright soft tissue in the vessel window -> contrast; ``weight=0`` gives a constant call. It
loads in milliseconds, so the tests exercise the worker and the CLI, not a network. Tests
that need right labels use the bundled default model (``bundled_model``).

``spool_synth`` writes a synthetic series into a node's spool as the listener would and
indexes it with the listener's own ingest code.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pydicom
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import save_file

from ivcontrast.classifier.aggregate import Aggregation
from ivcontrast.classifier.package import (
    CARD_FILE,
    DEFAULT_PACKAGE,
    ONNX_FILE,
    WEIGHTS_FILE,
    ModelCard,
    ModelPackage,
    load_package,
    sha256_file,
)
from ivcontrast.classifier.preprocess import PreprocessConfig
from ivcontrast.scp.header import instance_header, read_file_header
from ivcontrast.scp.spool import relative_path
from ivcontrast.store.db import Database
from ivcontrast.store.ingest import record_instance
from ivcontrast.store.values import StoredFile
from ivcontrast.synth import SeriesSpec, write_series

RULE_WEIGHT = 40.0
RULE_BIAS = -5.6  # logit 0 at a mean vessel-window value of 0.14


def write_rule_package(
    dest: Path,
    config: PreprocessConfig | None = None,
    *,
    weight: float = RULE_WEIGHT,
    bias: float = RULE_BIAS,
    name: str = "rule",
    version: str = "0.0.1",
) -> ModelPackage:
    """A model package whose ONNX graph is ``weight * mean(channel 1) + bias`` per slice."""
    config = config or PreprocessConfig(size=32, num_slices=8)
    channels, size = config.channels, config.size
    weights = np.zeros((channels, 1), np.float32)
    weights[min(1, channels - 1), 0] = weight
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input", "axes"], ["pooled"], keepdims=0),
            helper.make_node("MatMul", ["pooled", "weights"], ["scaled"]),
            helper.make_node("Add", ["scaled", "bias"], ["logit"]),
        ],
        name,
        [
            helper.make_tensor_value_info(
                "input", TensorProto.FLOAT, ["batch", channels, size, size]
            )
        ],
        [helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["batch", 1])],
        [
            numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
            numpy_helper.from_array(weights, "weights"),
            numpy_helper.from_array(np.array([bias], np.float32), "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    dest.mkdir(parents=True)
    onnx.save(model, dest / ONNX_FILE)
    save_file({"placeholder": np.zeros(1, np.float32)}, str(dest / WEIGHTS_FILE))
    card = ModelCard(
        name=name,
        version=version,
        architecture="efficientnet-b0",
        preprocess=config,
        aggregation=Aggregation("mean"),
        intended_use="tests: a fixed rule, not a network",
        files={f: sha256_file(dest / f) for f in (ONNX_FILE, WEIGHTS_FILE)},
    )
    (dest / CARD_FILE).write_text(card.to_json())
    return load_package(dest)


def bundled_model() -> Path | None:
    """The bundled default model package, once it exists in this checkout."""
    return DEFAULT_PACKAGE if (DEFAULT_PACKAGE / CARD_FILE).is_file() else None


@dataclass
class SpooledSynth:
    series_uid: str
    study_uid: str
    paths: list[Path]  # absolute, in the spool, in instance order
    spec: SeriesSpec


def spool_synth(db: Database, spool: Path, spec: SeriesSpec) -> SpooledSynth:
    """Write ``spec``'s series into ``spool`` as the listener lays it out, and index it."""
    staging = spool / ".staging" / f"{spec.seed}-{spec.region}-{spec.phase}"
    written = write_series(spec, staging)
    paths = []
    study_uid = series_uid = ""
    for path in written:
        ds, syntax = read_file_header(path)
        study_uid, series_uid = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
        relative = relative_path(study_uid, series_uid, str(ds.SOPInstanceUID))
        target = spool / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
        data = target.read_bytes()
        stored = StoredFile(relative, len(data), hashlib.sha256(data).hexdigest())
        record_instance(db, instance_header(ds, syntax), stored, None)
        paths.append(target)
    shutil.rmtree(staging)
    return SpooledSynth(series_uid, study_uid, paths, spec)


def corrupt_pixel_data(path: Path) -> None:
    """Keep half of the file's pixel data: a well-formed file whose image cannot be decoded."""
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(path, enforce_file_format=True)
