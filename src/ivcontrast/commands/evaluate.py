"""``ivcontrast evaluate PACKAGE DATA...``: a model package on labelled CT, as the node serves it.

Writes into ``--out``: report.json (scan and slice metrics with bootstrap 95% CIs, the
Youden-optimal threshold, calibration, breakdowns by region and phase, ContrastBolusAgent
against truth and predictions, every series), predictions.csv, roc.png, calibration.png and,
with ``--curves``, slice-probability curves per series.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ivcontrast.commands import CommandError, model_package
from ivcontrast.config import Settings
from ivcontrast.vocabulary import DEVICES

if TYPE_CHECKING:
    from ivcontrast.classifier.backends import Backend
    from ivcontrast.classifier.package import ModelCard, ModelPackage
    from ivcontrast.training.datasets import LabelledSeries
    from ivcontrast.training.evaluation import Evaluated

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "package",
        type=model_package,
        help="model package folder, or 'default' for the bundled model",
    )
    parser.add_argument("data", nargs="+", help="labels CSVs or synth manifests")
    parser.add_argument("-o", "--out", type=Path, required=True, help="report folder (created)")
    parser.add_argument(
        "--device",
        dest="classifier.device",
        choices=DEVICES,
        default=None,
        help="inference device (setting classifier.device)",
    )
    parser.add_argument(
        "--threads",
        dest="classifier.threads",
        type=int,
        default=None,
        help="CPU inference threads (setting classifier.threads)",
    )
    parser.add_argument(
        "--batch-size",
        dest="classifier.batch_size",
        type=int,
        default=None,
        help="slices per batch (setting classifier.batch_size)",
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="slice cache (default <data_dir>/slice-cache)"
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="preprocess in memory, keep nothing"
    )
    parser.add_argument(
        "-j",
        "--workers",
        type=int,
        default=1,
        help="processes that read and preprocess series (default 1)",
    )
    parser.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs (default 1000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--bins", type=int, default=10, help="calibration bins (default 10)")
    parser.add_argument(
        "--curves",
        type=int,
        default=0,
        metavar="N",
        help="slice-probability curves for the first N series (-1 = all)",
    )


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "series"


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Evaluate the package on the labelled data; write the report folder and print a summary."""
    from ivcontrast.training.metrics import jsonable

    if args.workers < 1 or args.bootstrap < 0 or args.bins < 1:
        raise CommandError("--workers and --bins must be at least 1, --bootstrap at least 0")
    items, package, backend = _open(args, settings)
    results = _predict(args, settings, items, package, backend)
    report = _report(args, results, package, backend)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(
        json.dumps(jsonable(report), indent=1) + "\n", encoding="utf-8"
    )
    _write_predictions(out / "predictions.csv", report["series"])
    done = [r for r in results if r.prediction is not None]
    _write_plots(out, done, report, package.card)
    _write_curves(out, done, args.curves)
    _print_summary(report, out)
    return 0


def _open(
    args: argparse.Namespace, settings: Settings
) -> tuple[list[LabelledSeries], ModelPackage, Backend]:
    """The labelled series, the package and the backend that runs it."""
    from ivcontrast.classifier.backends import select_backend
    from ivcontrast.classifier.errors import ClassifierError
    from ivcontrast.classifier.package import load_package
    from ivcontrast.training.datasets import DatasetError, read_datasets

    try:
        items = read_datasets(args.data)
        package = load_package(args.package)
        cls = settings.classifier
        backend = select_backend(cls.device, package, cls.threads, cls.batch_size)
    except (DatasetError, ClassifierError) as exc:
        raise CommandError(str(exc)) from None
    return items, package, backend


def _predict(
    args: argparse.Namespace,
    settings: Settings,
    items: list[LabelledSeries],
    package: ModelPackage,
    backend: Backend,
) -> list[Evaluated]:
    """Classify every series (preprocessed through the slice cache) with a progress bar."""
    from tqdm import tqdm

    from ivcontrast.classifier.engine import Classifier
    from ivcontrast.training.cache import SliceCache
    from ivcontrast.training.evaluation import predict_all

    classifier = Classifier(package, backend)
    cache = SliceCache(
        None if args.no_cache else (args.cache_dir or settings.data_dir / "slice-cache"),
        package.card.preprocess,
    )
    # One step per series to preprocess (through the cache), one to classify.
    steps = len(items) * (2 if cache.root is not None else 1)
    bar = tqdm(total=steps, unit="step", desc="evaluate", file=sys.stderr, disable=None)
    try:
        return predict_all(classifier, items, cache, args.workers, lambda stage, _: bar.update(1))
    finally:
        bar.close()


def _report(
    args: argparse.Namespace, results: list[Evaluated], package: ModelPackage, backend: Backend
) -> dict[str, Any]:
    """The metrics report, headed by the package evaluated and the data sources."""
    from ivcontrast.training.evaluation import build_report

    card = package.card
    try:
        report = build_report(results, card.threshold, args.bootstrap, args.seed, args.bins)
    except ValueError as exc:
        raise CommandError(f"{', '.join(args.data)}: {exc}") from None
    report = {
        "package": {
            "path": str(args.package),
            "name": card.name,
            "version": card.version,
            "sha256": package.card_sha256,
            "threshold": card.threshold,
            "aggregation": str(card.aggregation),
            "backend": backend.name,
        },
        **report,
    }
    report["data"]["sources"] = [str(p) for p in args.data]
    return report


def _write_plots(out: Path, done: list[Evaluated], report: dict[str, Any], card: ModelCard) -> None:
    """roc.png and calibration.png, of scans and of slices."""
    import numpy as np

    from ivcontrast.training.plots import calibration_plot, roc_plot

    scan_y = np.array([r.item.label for r in done])
    scan_p = np.array([r.prediction.probability for r in done])  # type: ignore[union-attr]
    slice_p = np.concatenate([r.prediction.slice_probabilities for r in done])  # type: ignore[union-attr]
    slice_y = np.repeat(scan_y, [len(r.prediction.slice_probabilities) for r in done])  # type: ignore[union-attr]
    title = f"{card.name} {card.version} on {len(done)} series"
    roc_plot(
        out / "roc.png",
        {"scans": (scan_y, scan_p, report["scan"]), "slices": (slice_y, slice_p, report["slice"])},
        title,
    )
    calibration_plot(
        out / "calibration.png",
        {"scans": report["scan"]["calibration"], "slices": report["slice"]["calibration"]},
        title,
    )


def _write_curves(out: Path, done: list[Evaluated], curves: int) -> None:
    """Slice-probability curves of the first ``curves`` series (-1 = all) into curves/."""
    from ivcontrast.training.plots import slice_curve_plot

    wanted = len(done) if curves < 0 else min(curves, len(done))
    if wanted:
        (out / "curves").mkdir(exist_ok=True)
    for i, r in enumerate(done[:wanted]):
        pred = r.prediction
        assert pred is not None
        truth = "contrast" if r.item.contrast else "no contrast"
        slice_curve_plot(
            out / "curves" / f"{i:04d}_{_safe_name(r.item.path.name)}.png",
            pred.slice_z_mm,
            pred.slice_probabilities,
            pred.threshold,
            pred.probability,
            f"{r.item.path.name}: truth {truth}, called {pred.label} (p={pred.probability:.3f})",
        )


def _write_predictions(path: Path, series: list[dict[str, Any]]) -> None:
    if not series:
        return
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(series[0]))
        writer.writeheader()
        for row in series:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})


def _ci(report: dict[str, Any], key: str, value: float | None) -> str:
    if value is None or value != value:
        return "n/a"
    low, high = report["ci95"].get(key, (None, None))
    if low is None or low != low:
        return f"{value:.4f}"
    return f"{value:.4f} [{low:.4f}, {high:.4f}]"


def _print_summary(report: dict[str, Any], out: Path) -> None:
    package = report["package"]
    print(
        f"model: {package['name']} {package['version']} (threshold {package['threshold']:.4f}, {package['aggregation']})"
    )
    data = report["data"]
    print(
        f"series: {data['summary']['series']} evaluated ({data['summary']['contrast']} contrast), {len(data['failed'])} failed; slices: {data['slices']}"
    )
    for level in ("scan", "slice"):
        r = report[level]
        at = r["at_threshold"]
        print(
            f"{level:5s}: AUC {_ci(r, 'auc', r['auc'])}  accuracy {_ci(r, 'accuracy', at['accuracy'])}  "
            f"sensitivity {_ci(r, 'sensitivity', at['sensitivity'])}  specificity {_ci(r, 'specificity', at['specificity'])}  "
            f"F1 {_ci(r, 'f1', at['f1'])}"
        )
        youden = r.get("youden")
        if youden:
            print(
                f"       Youden-optimal threshold {youden['threshold']:.4f} (J {youden['j']:.4f}); ECE {r['calibration']['ece']:.4f}, Brier {r['calibration']['brier']:.4f}"
            )
    tags = report["tags"]
    if tags["series_with_dicom_header"]:
        truth = tags["tag_vs_truth"]
        pred = tags["tag_vs_prediction"]
        print(
            f"ContrastBolusAgent: {truth['missing']} missing, {truth['wrong']} wrong, {truth['correct']} correct "
            f"({tags['missing_or_wrong_fraction']:.1%} missing or wrong); vs predictions: {pred['agrees']} agree, "
            f"{pred['disagrees']} disagree, {pred['missing']} missing"
        )
    print(f"report: {out / 'report.json'}")
