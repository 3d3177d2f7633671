"""One training run from labelled data (or phantoms) to a model package.

``run_training(options)``: read the labels, split by patient, fill the slice cache (reading or
generating series in ``workers`` processes), train with early stopping and checkpoints, and
export ``best.pt`` as a model package whose card says what it was trained on, how it did on
validation, its Youden threshold and the command that reproduces it. ``options`` are saved as
``config.json`` in the run directory; ``resume=True`` continues the run from ``last.pt``.

The run directory, beside the train loop's files (``last.pt``, ``best.pt``, history,
validation predictions)::

    config.json              the options (what --resume reads back)
    split.json               patients and series on each side of the split
    synthetic_manifest.csv   every drawn parameter of the phantom series (with --synthetic)
    timing.json              wall and CPU seconds of data, training and export
    history.png              losses and validation AUCs per epoch
    model/                   the exported package (unless --no-export or --package elsewhere)

Seeds fix the data, split, initialisation, order, augmentation and dropout. Floating-point sums
still depend on the kernels and the thread count, so a run repeats bit for bit on one machine
and thread count, and elsewhere to within rounding (which can tip the choice of best epoch).
"""

from __future__ import annotations

import hashlib
import json
import logging
import resource
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ivcontrast.classifier.aggregate import Aggregation
from ivcontrast.classifier.preprocess import PreprocessConfig
from ivcontrast.training.cache import CachedSeries, Outcome, SliceCache, fill
from ivcontrast.training.datasets import LabelledSeries, read_datasets, summarise
from ivcontrast.training.export import (
    DEFAULT_INTENDED_USE,
    SYNTHETIC_WARNING,
    export_checkpoint,
    regions_of,
    slice_counts,
    validation_card,
)
from ivcontrast.training.loop import BEST, TrainConfig, TrainResult
from ivcontrast.training.slices import SliceSet
from ivcontrast.training.split import split_by_patient
from ivcontrast.training.synthetic import (
    DEFAULT_PHASE_WEIGHTS,
    SyntheticItem,
    fill_synthetic,
    plan_set,
)

if TYPE_CHECKING:
    from ivcontrast.classifier.package import ModelPackage

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
TIMING_FILE = "timing.json"
SPLIT_FILE = "split.json"
SYNTHETIC_MANIFEST = "synthetic_manifest.csv"
# Manifest columns of phantom series worth counting in the card (what varied).
_SYNTH_COUNTED = (
    "manufacturer",
    "matrix",
    "tag_state",
    "patient_position",
    "fov_circle",
    "table",
    "oral_contrast",
    "injected_dense",
    "arms",
    "rescale_intercept",
)
_SYNTH_RANGES = ("thickness", "noise_sigma", "pixel_mm", "hu_offset", "blur_mm", "kvp")


class TrainingError(ValueError):
    """The options or the data cannot make a training run; the message says why."""


@dataclass(frozen=True)
class TrainOptions:
    out: str
    data: tuple[str, ...] = ()
    val_data: tuple[str, ...] = ()
    val_fraction: float = 0.2
    synthetic: int = 0  # phantom series to generate (split by patient with the rest)
    synthetic_seed: int = 1_000_000
    synthetic_slices: int = 0  # 0 = preprocess.num_slices
    synthetic_multiphase: float = 0.25
    synthetic_slabs: float = 0.0  # share of phantom series cut short instead of thinned
    synthetic_matrix: int | None = None
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    aggregation: Aggregation = field(default_factory=Aggregation)
    init_from: str | None = None
    name: str = "ivcontrast-contrast"
    version: str = "0.1.0"
    intended_use: str = ""
    weights_dtype: str = "float32"
    package: str | None = None  # default <out>/model; "" = do not export
    cache_dir: str = "slice-cache"
    workers: int = 1
    command: str = ""  # the command line that reproduces this run

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["preprocess"] = self.preprocess.to_dict()
        out["train"] = self.train.to_dict()
        out["aggregation"] = self.aggregation.to_dict()
        out["data"] = list(self.data)
        out["val_data"] = list(self.val_data)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainOptions:
        data = dict(data)
        data["preprocess"] = PreprocessConfig.from_dict(data["preprocess"])
        data["train"] = TrainConfig.from_dict(data["train"])
        data["aggregation"] = Aggregation.from_dict(data["aggregation"])
        data["data"] = tuple(data.get("data", ()))
        data["val_data"] = tuple(data.get("val_data", ()))
        return cls(**data)

    @property
    def package_dir(self) -> Path | None:
        if self.package == "":
            return None
        return Path(self.package) if self.package else Path(self.out) / "model"


@dataclass
class RunSummary:
    run_dir: Path
    result: TrainResult
    package: Path | None
    timing: dict[str, float]
    card: dict[str, Any]  # the exported card (empty without export)
    failed: list[str]


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _progress_bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, desc=desc, unit="series", file=sys.stderr, disable=None if enabled else True
    )


def _file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _synthetic_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _SYNTH_COUNTED:
        counts = Counter(str(row.get(key)) for row in rows if key in row)
        if counts:
            out[key] = dict(sorted(counts.items()))
    for key in _SYNTH_RANGES:
        values = [float(row[key]) for row in rows if row.get(key) not in (None, "")]
        if values:
            out[key] = {
                "min": round(min(values), 3),
                "median": round(float(np.median(values)), 3),
                "max": round(max(values), 3),
            }
    return out


@dataclass
class _Loaded:
    items: list[Any]  # LabelledSeries and SyntheticItem
    keys: list[str | None]  # cache key per item; None = unreadable
    val_flags: list[bool]  # True = from --val-data
    description: dict[str, Any]  # sources and phantom parameters, for the card
    failed: list[str]
    synthetic_rows: list[dict[str, Any]]


def _load_items(options: TrainOptions, cache: SliceCache, progress: bool) -> _Loaded:
    """Read the labels, plan the phantoms, and fill the cache with every series."""
    files: list[LabelledSeries] = read_datasets(options.data) if options.data else []
    val_files: list[LabelledSeries] = read_datasets(options.val_data) if options.val_data else []
    synthetic: list[SyntheticItem] = []
    if options.synthetic:
        synthetic = plan_set(
            options.synthetic,
            options.synthetic_seed,
            options.synthetic_slices or options.preprocess.num_slices or 32,
            multiphase_fraction=options.synthetic_multiphase,
            slab_fraction=options.synthetic_slabs,
            overrides={"matrix": options.synthetic_matrix} if options.synthetic_matrix else None,
        )
    items: list[Any] = [*files, *synthetic, *val_files]
    if not items:
        raise TrainingError("no training data: give labels CSVs or manifests, or --synthetic N")
    keys: list[str | None] = [None] * len(items)
    failed: list[str] = []
    rows: list[dict[str, Any]] = []
    bar = _progress_bar(len(items), "preprocess", progress)

    def tick(outcome: Outcome) -> None:
        bar.update(1)

    try:
        file_items = [(i, it) for i, it in enumerate(items) if isinstance(it, LabelledSeries)]
        for outcome in fill(cache, [it.path for _, it in file_items], options.workers, tick):
            i = file_items[outcome.index][0]
            if outcome.key is None:
                failed.append(outcome.error or f"{items[i].path}: failed")
            else:
                keys[i] = outcome.key
        synth_items = [(i, it) for i, it in enumerate(items) if isinstance(it, SyntheticItem)]
        if synth_items:
            outcomes = fill_synthetic(cache, [it for _, it in synth_items], options.workers, tick)
            for outcome in outcomes:
                i = synth_items[outcome.index][0]
                if outcome.key is None:
                    failed.append(outcome.error or f"{items[i].origin}: failed")
                else:
                    keys[i] = outcome.key
                    rows.append(outcome.row or {})
    finally:
        bar.close()
    for message in failed:
        log.warning("left out: %s", message)
    description: dict[str, Any] = {}
    if options.data:
        description["sources"] = [{"path": str(p), "sha256": _file_digest(p)} for p in options.data]
    if options.val_data:
        description["validation_sources"] = [
            {"path": str(p), "sha256": _file_digest(p)} for p in options.val_data
        ]
    if synthetic:
        description["synthetic"] = {
            "generator": "ivcontrast.synth (phantoms), thinned by ivcontrast.training.synthetic",
            "series": len(synthetic),
            "seeds": [options.synthetic_seed, options.synthetic_seed + len(synthetic) - 1],
            "slices_per_series": synthetic[0].slices,
            "multiphase_fraction": options.synthetic_multiphase,
            "slabs": sum(1 for item in synthetic if "slices" in item.spec),
            "phase_weights": DEFAULT_PHASE_WEIGHTS,
            "matrix": options.synthetic_matrix or "drawn (512 or 256)",
            "acquisition": _synthetic_summary(rows),
        }
    val_flags = [False] * (len(files) + len(synthetic)) + [True] * len(val_files)
    return _Loaded(items, keys, val_flags, description, failed, rows)


def _split(
    items: Sequence[Any], val_flags: Sequence[bool], options: TrainOptions
) -> tuple[list[int], list[int], str]:
    if any(val_flags):
        train = [i for i, v in enumerate(val_flags) if not v]
        val = [i for i, v in enumerate(val_flags) if v]
        overlap = {items[i].patient_id for i in train} & {items[i].patient_id for i in val}
        if overlap:
            raise TrainingError(
                f"{len(overlap)} patients are in both the training and the validation data "
                f"(e.g. {sorted(overlap)[0]}): split by patient"
            )
        return train, val, "given validation data (no shared patients)"
    split = split_by_patient(items, options.val_fraction, options.train.seed)
    return (
        list(split.train),
        list(split.val),
        (
            f"by patient: {options.val_fraction:g} of the patients of each region and class, seed {options.train.seed}"
        ),
    )


def run_training(options: TrainOptions, resume: bool = False, progress: bool = True) -> RunSummary:
    """Train (or resume) the run in ``options.out`` and export its package."""
    run_dir = _open_run_dir(options, resume)
    base_package = _base_package(options)
    t0, c0 = time.perf_counter(), _cpu_seconds()
    cache = SliceCache(options.cache_dir, options.preprocess)
    loaded = _load_items(options, cache, progress)
    if loaded.synthetic_rows:
        from ivcontrast.synth.manifest import write_manifest

        write_manifest(run_dir / SYNTHETIC_MANIFEST, loaded.synthetic_rows)
    data = _split_data(loaded, cache, options)
    data_s, data_cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    _write_split(run_dir / SPLIT_FILE, data)
    training_data = _training_data(options, loaded, data, base_package)
    log.info(
        "data: %d training series (%d slices), %d validation series (%d slices), %d unreadable, "
        "%.1f s (%.1f CPU s)",
        len(data.train_items),
        len(data.train_set),
        len(data.val_items),
        len(data.val_set),
        len(loaded.failed),
        data_s,
        data_cpu,
    )
    return _train_and_export(
        options,
        resume,
        progress,
        run_dir,
        data.train_set,
        data.val_set,
        base_package,
        _card_args(options, data.train_items, training_data, base_package),
        {"data_seconds": data_s, "data_cpu_seconds": data_cpu},
        loaded.failed,
    )


def _open_run_dir(options: TrainOptions, resume: bool) -> Path:
    """The run directory, checked for (or against) a run to resume; writes config.json."""
    run_dir = Path(options.out)
    if resume:
        if not (run_dir / "last.pt").is_file():
            raise TrainingError(f"{run_dir}: no last.pt to resume from")
    elif (run_dir / "last.pt").exists():
        raise TrainingError(
            f"{run_dir}: already holds a run; pass --resume or choose another --out"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(
        json.dumps(options.to_dict(), indent=2) + "\n", encoding="utf-8"
    )
    return run_dir


def _base_package(options: TrainOptions) -> ModelPackage | None:
    """The package to fine-tune (``--init-from``), whose preprocessing the run must keep."""
    from ivcontrast.classifier.package import load_package

    base_package = load_package(options.init_from) if options.init_from else None
    if base_package is not None and base_package.card.preprocess != options.preprocess:
        raise TrainingError(
            f"{options.init_from}: its preprocessing differs from this run's; fine-tuning keeps the package's"
        )
    return base_package


@dataclass
class _SplitData:
    """The readable series on each side of the split, their cache entries and slices."""

    train_items: list[Any]
    val_items: list[Any]
    train_entries: list[CachedSeries]
    val_entries: list[CachedSeries]
    train_set: SliceSet
    val_set: SliceSet
    text: str  # how the split was made, for the card


def _split_data(loaded: _Loaded, cache: SliceCache, options: TrainOptions) -> _SplitData:
    """Split the readable series by patient, each side with both classes, into slice sets."""
    ok = [i for i, key in enumerate(loaded.keys) if key is not None]
    if len(ok) < 2:
        raise TrainingError(f"only {len(ok)} series could be read: {'; '.join(loaded.failed[:3])}")
    usable = [loaded.items[i] for i in ok]
    train_idx, val_idx, split_text = _split(usable, [loaded.val_flags[i] for i in ok], options)
    if not train_idx or not val_idx:
        raise TrainingError(
            "the split left the training or the validation side empty: more patients needed"
        )
    for side, idx in (("training", train_idx), ("validation", val_idx)):
        classes = {usable[i].contrast for i in idx}
        if len(classes) < 2:
            raise TrainingError(f"the {side} data hold only one class")
    train_entries = _cache_entries(cache, [str(loaded.keys[ok[i]]) for i in train_idx])
    val_entries = _cache_entries(cache, [str(loaded.keys[ok[i]]) for i in val_idx])
    train_items = [usable[i] for i in train_idx]
    val_items = [usable[i] for i in val_idx]
    return _SplitData(
        train_items=train_items,
        val_items=val_items,
        train_entries=train_entries,
        val_entries=val_entries,
        train_set=SliceSet.build(
            train_entries,
            [it.label for it in train_items],
            [getattr(it, "weight", 1.0) for it in train_items],  # phantoms: 1
        ),
        val_set=SliceSet.build(val_entries, [it.label for it in val_items]),
        text=split_text,
    )


def _cache_entries(cache: SliceCache, keys: Sequence[str]) -> list[CachedSeries]:
    """The cache entries of ``keys``, every one of which must still be there."""
    entries = [cache.load(key) for key in keys]
    present = [entry for entry in entries if entry is not None]
    if len(present) < len(entries):
        raise TrainingError(f"{cache.root}: cache entries vanished while loading")
    return present


def _write_split(path: Path, data: _SplitData) -> None:
    """split.json: patient, series and label of each side's series."""
    split_record = {
        side: [
            {"patient_id": it.patient_id, "series": str(it.path), "label": it.label}
            for it in members
        ]
        for side, members in (("train", data.train_items), ("validation", data.val_items))
    }
    path.write_text(json.dumps(split_record, indent=1) + "\n", encoding="utf-8")


def _training_data(
    options: TrainOptions, loaded: _Loaded, data: _SplitData, base_package: ModelPackage | None
) -> dict[str, Any]:
    """The card's ``training_data``: what was trained on, how it was split, how to repeat it."""
    return {
        "train": summarise(data.train_items),
        "validation": summarise(data.val_items),
        "slices": {
            "train": slice_counts([e.n_slices for e in data.train_entries]),
            "validation": slice_counts([e.n_slices for e in data.val_entries]),
        },
        "split": data.text,
        "unreadable_series": len(loaded.failed),
        **loaded.description,
        "train_config": options.train.to_dict(),
        "init_from": None
        if base_package is None
        else {
            "name": base_package.card.name,
            "version": base_package.card.version,
            "sha256": base_package.card_sha256,
        },
        "seed": options.train.seed,
        "command": options.command,
    }


def _card_args(
    options: TrainOptions,
    train_items: Sequence[Any],
    training_data: dict[str, Any],
    base_package: ModelPackage | None,
) -> dict[str, Any]:
    """The arguments of ``validation_card`` other than the epoch and its predictions."""
    intended_use = options.intended_use or (
        SYNTHETIC_WARNING if options.synthetic and not options.data else DEFAULT_INTENDED_USE
    )
    return {
        "name": options.name,
        "version": options.version,
        "architecture": options.train.arch
        if base_package is None
        else base_package.card.architecture,
        "preprocess": options.preprocess,
        "aggregation": options.aggregation,
        "dropout": options.train.dropout if base_package is None else base_package.card.dropout,
        "regions": regions_of(train_items),
        "intended_use": intended_use,
        "weights_dtype": options.weights_dtype,
        "training_data": training_data,
        "seed": options.train.seed,
    }


def _train_and_export(
    options: TrainOptions,
    resume: bool,
    progress: bool,
    run_dir: Path,
    train_set: SliceSet,
    val_set: SliceSet,
    base_package: ModelPackage | None,
    card_args: dict[str, Any],
    timing: dict[str, float],
    failed: list[str],
) -> RunSummary:
    from ivcontrast.training.loop import Trainer
    from ivcontrast.training.plots import history_plot

    t0, c0 = time.perf_counter(), _cpu_seconds()
    network = base_package.build_torch_model() if base_package is not None else None
    config = options.train
    if base_package is not None:
        config = replace(
            config, arch=base_package.card.architecture, dropout=base_package.card.dropout
        )
    trainer = Trainer(
        config, options.preprocess.windows, run_dir, options.aggregation, network, progress
    )
    if resume:
        trainer.resume()

    def on_best(epoch: int, predictions: Any) -> dict[str, Any]:
        card = validation_card(predictions=predictions, epoch=epoch, **card_args)
        return {"card_json": card.to_json()}

    result = trainer.fit(train_set, val_set, on_best)
    timing.update(train_seconds=time.perf_counter() - t0, train_cpu_seconds=_cpu_seconds() - c0)
    if result.history:
        history_plot(run_dir / "history.png", result.history)
    package = options.package_dir
    if package is not None:
        t1 = time.perf_counter()
        export_checkpoint(run_dir / BEST, package, overwrite=True)
        timing["export_seconds"] = time.perf_counter() - t1
    timing["total_seconds"] = sum(
        v for k, v in timing.items() if k.endswith("_seconds") and "cpu" not in k
    )
    timing["total_cpu_seconds"] = timing.get("data_cpu_seconds", 0.0) + timing["train_cpu_seconds"]
    (run_dir / TIMING_FILE).write_text(json.dumps(timing, indent=2) + "\n", encoding="utf-8")
    card = json.loads((package / "card.json").read_text()) if package is not None else {}
    return RunSummary(
        run_dir=run_dir,
        result=result,
        package=package,
        timing=timing,
        card=card,
        failed=failed,
    )
