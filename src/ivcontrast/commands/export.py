"""``ivcontrast export CHECKPOINT OUT``: a training checkpoint as a model package.

CHECKPOINT is a run's ``best.pt`` (or the run directory). The package gets ONNX + safetensors
+ card with checksums; the export fails unless ONNX Runtime reproduces PyTorch's logits within
1e-4. The card comes from the checkpoint (validation threshold and metrics, data summary,
command); ``--report NAME=report.json`` adds the metrics of an ``ivcontrast evaluate`` report
as ``metrics.NAME`` (``--test-report PATH`` is ``--report test=PATH``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ivcontrast.commands import CommandError
from ivcontrast.config import Settings

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", type=Path, help="best.pt of a training run, or the run directory"
    )
    parser.add_argument("out", type=Path, help="package directory to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing package")
    parser.add_argument("--name", default=None, help="model name (default: the checkpoint's)")
    parser.add_argument(
        "--model-version",
        dest="model_version",
        default=None,
        help="model version (default: the checkpoint's)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="decision threshold (default: Youden on validation)",
    )
    parser.add_argument(
        "--review-band",
        type=float,
        default=None,
        help="scan probabilities this close to the threshold go to review "
        "(default: the checkpoint's, 0 = never)",
    )
    parser.add_argument(
        "--weights-dtype",
        choices=["float32", "float16"],
        default=None,
        help="safetensors precision (default: the checkpoint's)",
    )
    parser.add_argument(
        "--intended-use", default=None, help="intended-use text (default: the checkpoint's)"
    )
    parser.add_argument(
        "--test-report",
        type=Path,
        default=None,
        help="an 'ivcontrast evaluate' report.json to record in the card as metrics.test",
    )
    parser.add_argument(
        "--report",
        action="append",
        default=[],
        metavar="NAME=REPORT",
        help="record another evaluation report as metrics.NAME (repeatable)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from ivcontrast.classifier.errors import PackageError
    from ivcontrast.training.export import export_checkpoint

    if not args.checkpoint.exists():
        raise CommandError(f"{args.checkpoint}: no such checkpoint")
    if args.out.exists() and not args.overwrite:
        raise CommandError(f"{args.out}: already exists (pass --overwrite to replace it)")
    named = [("test", args.test_report)] if args.test_report is not None else []
    for item in args.report:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise CommandError(f"--report {item!r}: expected NAME=REPORT.json")
        named.append((name, Path(path)))
    reports = {}
    for name, path in named:
        if name in reports or name == "validation":
            raise CommandError(f"--report {name}: used twice, or the checkpoint's own 'validation'")
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CommandError(f"{path}: cannot read it: {exc}") from None
        if not isinstance(report, dict) or not {"scan", "slice"} <= report.keys():
            raise CommandError(f"{path}: not an 'ivcontrast evaluate' report.json")
        reports[name] = report
    try:
        package = export_checkpoint(
            args.checkpoint,
            args.out,
            name=args.name,
            version=args.model_version,
            threshold=args.threshold,
            review_band=args.review_band,
            weights_dtype=args.weights_dtype,
            intended_use=args.intended_use,
            reports=reports,
            overwrite=args.overwrite,
        )
    except (PackageError, ValueError, KeyError, RuntimeError) as exc:
        raise CommandError(f"{args.checkpoint}: {exc}") from None
    card = package.card
    sizes = {p.name: p.stat().st_size for p in package.path.iterdir() if p.is_file()}
    print(
        f"package: {package.path} ({card.name} {card.version}, {card.architecture}, {card.input_size} px, threshold {card.threshold:.4f})"
    )
    print(
        "files: " + ", ".join(f"{name} {size / 1e6:.2f} MB" for name, size in sorted(sizes.items()))
    )
    print(f"card sha256: {package.card_sha256}")
    return 0
