"""``ivcontrast train``: train or fine-tune a contrast model; writes a run directory and a package.

Data: labels CSVs (path, label, patient_id[, region, phase]) or ``ivcontrast synth`` manifests,
and/or ``--synthetic N`` phantom series generated on the fly. The split is by patient.
``--resume`` continues the run in ``--out`` with the options saved in its config.json; only
``--device``, ``--threads``, ``--workers`` and ``--epochs`` may change then.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ivcontrast.commands import CommandError, model_package
from ivcontrast.config import Settings
from ivcontrast.vocabulary import DEVICES

if TYPE_CHECKING:
    from ivcontrast.classifier.preprocess import PreprocessConfig
    from ivcontrast.training.loop import TrainConfig

log = logging.getLogger(__name__)

ARCHS = ("b0", "b1", "b2", "b3", "b4")
# Flags that may be given again with --resume (they do not change what is learnt).
RESUME_FLAGS = {"device", "threads", "workers", "epochs"}
_TRAIN_FLAGS = {
    "arch": "arch",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "weight_decay": "weight_decay",
    "patience": "patience",
    "seed": "seed",
    "device": "device",
    "amp": "amp",
    "dropout": "dropout",
    "samples_per_epoch": "samples_per_epoch",
    "freeze_backbone": "freeze_backbone",
    "freeze_blocks": "freeze_blocks",
    "threads": "threads",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``ivcontrast train``, in the groups ``--help`` shows."""
    _add_data_arguments(parser)
    _add_preprocessing_arguments(parser)
    _add_model_arguments(parser)
    _add_optimisation_arguments(parser)
    _add_output_arguments(parser)


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Training and validation data, phantoms, cache and reader processes."""
    data = parser.add_argument_group("data")
    data.add_argument("data", nargs="*", help="labels CSVs or synth manifests")
    data.add_argument(
        "--val-data",
        action="append",
        default=None,
        metavar="CSV",
        help="validation data (default: a patient split of DATA)",
    )
    data.add_argument(
        "--val-fraction",
        type=float,
        default=None,
        help="share of patients for validation (default 0.2)",
    )
    data.add_argument(
        "--synthetic",
        type=int,
        default=None,
        metavar="N",
        help="also train on N phantom series generated into the cache",
    )
    data.add_argument(
        "--synthetic-seed", type=int, default=None, help="first phantom seed (default 1000000)"
    )
    data.add_argument(
        "--synthetic-slices",
        type=int,
        default=None,
        help="slices per phantom series (default: --num-slices)",
    )
    data.add_argument(
        "--synthetic-multiphase",
        type=float,
        default=None,
        help="share of phantom patients with a multi-phase study (default 0.25)",
    )
    data.add_argument(
        "--synthetic-slabs",
        type=float,
        default=None,
        help="share of phantom series cut short (contiguous slices) instead of thinned (default 0)",
    )
    data.add_argument(
        "--synthetic-matrix",
        type=int,
        default=None,
        help="phantom matrix (default: drawn, 512 or 256)",
    )
    data.add_argument(
        "--cache-dir", type=Path, default=None, help="slice cache (default <data_dir>/slice-cache)"
    )
    data.add_argument(
        "-j",
        "--workers",
        type=int,
        default=None,
        help="processes reading or generating series (default 1)",
    )


def _add_preprocessing_arguments(parser: argparse.ArgumentParser) -> None:
    """Preprocessing, which the card records and the node repeats."""
    prep = parser.add_argument_group("preprocessing (recorded in the card)")
    prep.add_argument("--size", type=int, default=None, help="input size in pixels (default 160)")
    prep.add_argument(
        "--num-slices",
        type=int,
        default=None,
        help="slices sampled per series (default 32; 0 = all)",
    )
    prep.add_argument(
        "--slab-mm", type=float, default=None, help="average slices within this slab (default 0)"
    )


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Architecture, fine-tuning and slice aggregation."""
    model = parser.add_argument_group("model")
    model.add_argument(
        "--arch", choices=ARCHS, default=None, help="EfficientNet variant (default b0)"
    )
    model.add_argument("--dropout", type=float, default=None, help="head dropout (default 0.2)")
    model.add_argument(
        "--init-from",
        type=model_package,
        default=None,
        metavar="PACKAGE",
        help="fine-tune this model package (its architecture and preprocessing); 'default' is the bundled one",
    )
    model.add_argument(
        "--freeze-backbone",
        action="store_const",
        const=True,
        default=None,
        help="train only the head",
    )
    model.add_argument(
        "--freeze-blocks",
        type=int,
        default=None,
        metavar="N",
        help="freeze the stem and the first N of 7 block stages",
    )
    model.add_argument(
        "--aggregation",
        choices=["topk_mean", "mean"],
        default=None,
        help="slice to scan probability (default topk_mean)",
    )
    model.add_argument("--topk", type=int, default=None, help="k of topk_mean (default 8)")


def _add_optimisation_arguments(parser: argparse.ArgumentParser) -> None:
    """Optimiser, schedule, seed, augmentation and device."""
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=None, help="most epochs (default 20)")
    opt.add_argument("--batch-size", type=int, default=None, help="slices per step (default 32)")
    opt.add_argument(
        "--lr", type=float, default=None, help="peak learning rate, AdamW (default 1e-3)"
    )
    opt.add_argument(
        "--weight-decay", type=float, default=None, help="AdamW weight decay (default 1e-4)"
    )
    opt.add_argument(
        "--patience",
        type=int,
        default=None,
        help="epochs without a better validation loss before stopping (default 5)",
    )
    opt.add_argument(
        "--samples-per-epoch",
        type=int,
        default=None,
        help="slices per epoch (default: all training slices)",
    )
    opt.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of split, initialisation, order and augmentation (default 0)",
    )
    opt.add_argument(
        "--no-augment", action="store_true", default=None, help="train without augmentation"
    )
    opt.add_argument(
        "--device",
        choices=DEVICES,
        default=None,
        help="training device (default auto)",
    )
    opt.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 autocast on CUDA (default on)",
    )
    opt.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default: torch's)"
    )


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """Run directory, resuming, and the exported package and its card."""
    out = parser.add_argument_group("output")
    out.add_argument(
        "-o",
        "--out",
        type=Path,
        required=True,
        help="run directory (checkpoints, history, package)",
    )
    out.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    out.add_argument(
        "--package",
        type=Path,
        default=None,
        help="where to export the package (default <out>/model)",
    )
    out.add_argument(
        "--no-export", action="store_true", default=None, help="do not export a package"
    )
    out.add_argument("--name", default=None, help="model name in the card")
    out.add_argument(
        "--model-version",
        dest="model_version",
        default=None,
        help="model version in the card (default 0.1.0)",
    )
    out.add_argument("--intended-use", default=None, help="intended-use text of the card")
    out.add_argument(
        "--weights-dtype",
        choices=["float32", "float16"],
        default=None,
        help="safetensors precision (default float32)",
    )


def _given(args: argparse.Namespace) -> set[str]:
    skip = {"command", "config", "set", "data_dir", "database_url", "log_level", "out", "resume"}
    return {k for k, v in vars(args).items() if k not in skip and v not in (None, [], False)}


def _pick(value: Any, default: Any) -> Any:
    """``value``, or ``default`` where the flag was not given."""
    return default if value is None else value


def options_from_args(args: argparse.Namespace, settings: Settings) -> Any:
    """The run's ``TrainOptions`` from the flags (defaults for the rest)."""
    from ivcontrast.classifier.aggregate import Aggregation
    from ivcontrast.training.pipeline import TrainOptions

    _check_freezing(args)
    preprocess = _preprocess_from_args(args)
    try:
        train = _train_config_from_args(args)
        aggregation = Aggregation(_pick(args.aggregation, "topk_mean"), _pick(args.topk, 8))
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    _check_data(args)
    workers = _pick(args.workers, 1)
    if workers < 1:
        raise CommandError(f"--workers {workers}: at least 1")
    options = TrainOptions(
        out=str(args.out),
        data=tuple(str(p) for p in args.data),
        val_data=tuple(str(p) for p in (args.val_data or [])),
        val_fraction=_pick(args.val_fraction, 0.2),
        synthetic=_pick(args.synthetic, 0),
        synthetic_seed=_pick(args.synthetic_seed, 1_000_000),
        synthetic_slices=_pick(args.synthetic_slices, 0),
        synthetic_multiphase=_pick(args.synthetic_multiphase, 0.25),
        synthetic_slabs=_pick(args.synthetic_slabs, 0.0),
        synthetic_matrix=args.synthetic_matrix,
        preprocess=preprocess,
        train=train,
        aggregation=aggregation,
        init_from=None if args.init_from is None else str(args.init_from),
        name=_pick(args.name, "ivcontrast-contrast"),
        version=_pick(args.model_version, "0.1.0"),
        intended_use=_pick(args.intended_use, ""),
        weights_dtype=_pick(args.weights_dtype, "float32"),
        package="" if args.no_export else (None if args.package is None else str(args.package)),
        cache_dir=str(args.cache_dir or settings.data_dir / "slice-cache"),
        workers=workers,
    )
    return replace(options, command=command_line(args))


def _check_freezing(args: argparse.Namespace) -> None:
    """Freezing takes one of its two flags, and a package to fine-tune."""
    if args.freeze_backbone and args.freeze_blocks:
        raise CommandError("--freeze-backbone and --freeze-blocks: choose one")
    if (args.freeze_backbone or args.freeze_blocks) and args.init_from is None:
        raise CommandError("--freeze-backbone/--freeze-blocks: freezing needs --init-from PACKAGE")


def _preprocess_from_args(args: argparse.Namespace) -> PreprocessConfig:
    """The ``PreprocessConfig``: the flags', or the fine-tuned package's (which allows none)."""
    from ivcontrast.classifier.preprocess import PreprocessConfig

    prep_changes = {
        k: getattr(args, k)
        for k in ("size", "num_slices", "slab_mm")
        if getattr(args, k) is not None
    }
    if args.init_from is None:
        try:
            return PreprocessConfig(**prep_changes)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    from ivcontrast.classifier.errors import PackageError
    from ivcontrast.classifier.package import load_package

    if prep_changes or args.arch or args.dropout is not None:
        raise CommandError(
            "--init-from: the package fixes the architecture and preprocessing; drop --size/--num-slices/--slab-mm/--arch/--dropout"
        )
    try:
        base = load_package(args.init_from)
    except PackageError as exc:
        raise CommandError(str(exc)) from None
    return base.card.preprocess


def _train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The ``TrainConfig`` of the given flags; raises ValueError for invalid values."""
    from ivcontrast.training.augment import NO_AUGMENTATION
    from ivcontrast.training.loop import TrainConfig

    train_values: dict[str, Any] = {}
    for flag, name in _TRAIN_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            train_values[name] = f"efficientnet-{value}" if flag == "arch" else value
    if args.no_augment:
        train_values["augment"] = NO_AUGMENTATION
    return TrainConfig(**train_values)


def _check_data(args: argparse.Namespace) -> None:
    """Some training data, every labels file present, and at least 2 phantoms if any."""
    if not args.data and not args.synthetic:
        raise CommandError("no training data: give labels CSVs or manifests, or --synthetic N")
    for path in [*args.data, *(args.val_data or [])]:
        if not Path(path).is_file():
            raise CommandError(f"{path}: no such labels file")
    if args.synthetic is not None and args.synthetic < 2:
        raise CommandError(f"--synthetic {args.synthetic}: at least 2 series")


def command_line(args: argparse.Namespace) -> str:
    """The command as given (flags in a canonical order), to reproduce the run."""
    parts = ["ivcontrast", "train", *map(str, args.data)]
    for action_dest, value in sorted(vars(args).items()):
        if action_dest in {
            "command",
            "config",
            "set",
            "database_url",
            "log_level",
            "data",
            "resume",
        }:
            continue
        if action_dest == "amp" and value is False:
            parts.append("--no-amp")
            continue
        if value in (None, False, []):
            continue
        flag = "--" + action_dest.replace("_", "-")
        if action_dest == "model_version":
            flag = "--model-version"
        if action_dest == "data_dir":
            parts[1:1] = ["--data-dir", str(value)]
            continue
        if value is True:
            parts.append(flag)
        elif isinstance(value, list):
            for v in value:
                parts += [flag, str(v)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


def run(args: argparse.Namespace, settings: Settings) -> int:
    # OpenMP threads that spin while waiting take the CPU from each other and from every other
    # process: measured here, a training step of 2 threads cost 40x its CPU time on a busy
    # 2-core machine. Sleeping waiters cost nothing. Read by libgomp when torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from ivcontrast.training.datasets import DatasetError
    from ivcontrast.training.pipeline import CONFIG_FILE, TrainingError, TrainOptions, run_training

    if args.resume:
        config_path = args.out / CONFIG_FILE
        if not config_path.is_file():
            raise CommandError(f"{config_path}: missing; nothing to resume")
        extra = _given(args) - RESUME_FLAGS
        if extra:
            raise CommandError(
                f"--resume takes its options from {config_path}; drop {', '.join('--' + e.replace('_', '-') for e in sorted(extra))}"
            )
        options = TrainOptions.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        train_changes = {
            k: getattr(args, k)
            for k in ("device", "threads", "epochs")
            if getattr(args, k) is not None
        }
        options = replace(
            options,
            train=replace(options.train, **train_changes),
            workers=args.workers or options.workers,
        )
    else:
        options = options_from_args(args, settings)
    try:
        summary = run_training(options, resume=args.resume)
    except (TrainingError, DatasetError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    result = summary.result
    print(f"run: {summary.run_dir}")
    print(
        f"epochs: {result.epochs_run}{' (stopped early)' if result.stopped_early else ''}; best epoch {result.best_epoch}, validation loss {result.best_val_loss:.4f}"
    )
    if summary.package is not None:
        card = summary.card
        scan = card.get("metrics", {}).get("validation", {}).get("scan", {})
        print(
            f"package: {summary.package} (threshold {card.get('threshold'):.4f}, Youden on validation)"
        )
        if scan:
            at = scan.get("at_threshold", {})
            print(
                f"validation scans: AUC {_num(scan.get('auc'))}, accuracy {_num(at.get('accuracy'))}, sensitivity {_num(at.get('sensitivity'))}, specificity {_num(at.get('specificity'))}"
            )
    timing = summary.timing
    print(
        f"time: data {timing.get('data_seconds', 0):.0f} s, training {timing.get('train_seconds', 0):.0f} s; CPU {timing.get('total_cpu_seconds', 0):.0f} s"
    )
    if summary.failed:
        print(f"left out {len(summary.failed)} unreadable series (see the log)")
    return 0


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"
