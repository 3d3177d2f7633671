"""``ivcontrast synth``: write synthetic CT phantom series, a manifest and previews.

Each series gets seed ``--seed + i``; a fixed seed gives identical files. The manifest
(``manifest.csv``) has one row per series: the label (contrast yes/no), the phase and
every drawn parameter, the UIDs, the folder and the ContrastBolusAgent value written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivcontrast.commands import CommandError
from ivcontrast.config import Settings

log = logging.getLogger(__name__)

PHASES = ("none", "arterial", "portal_venous", "delayed")
CONTRAST_PHASES = (("arterial", 0.35), ("portal_venous", 0.45), ("delayed", 0.2))
MULTIPHASE = ("none", "arterial", "portal_venous")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="output folder (created; must hold no manifest)")
    parser.add_argument("-n", "--count", type=int, default=1, help="number of series (default 1)")
    parser.add_argument(
        "--region",
        choices=["chest", "headneck", "mixed"],
        default="mixed",
        help="body region (default: mixed, alternating)",
    )
    parser.add_argument(
        "--contrast",
        choices=["yes", "no", "mixed"],
        default="mixed",
        help="IV contrast: yes (arterial, portal venous or delayed), no, or mixed (half)",
    )
    parser.add_argument(
        "--phase",
        default=None,
        help=f"comma-separated phases to cycle through ({', '.join(PHASES)}); overrides --contrast",
    )
    parser.add_argument(
        "--multiphase",
        action="store_true",
        help="each patient gets a study with native, arterial and portal venous series",
    )
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument(
        "--matrix", type=int, default=None, help="rows = columns (default: 512 or 256)"
    )
    parser.add_argument(
        "--slices",
        type=int,
        default=None,
        help="slices per series (default: the region's coverage)",
    )
    parser.add_argument("--thickness", type=float, default=None, help="slice thickness, mm")
    parser.add_argument("--spacing", type=float, default=None, help="spacing between slices, mm")
    parser.add_argument("--fov", type=float, default=None, help="reconstruction diameter, mm")
    parser.add_argument("--noise", type=float, default=None, help="noise sigma, HU (default 5-40)")
    parser.add_argument(
        "--tag",
        choices=["correct", "missing", "wrong"],
        default=None,
        help="force what ContrastBolusAgent says (default: drawn with --tag-rates)",
    )
    parser.add_argument(
        "--tag-rates",
        default=None,
        metavar="C,M,W",
        help="rates of correct, missing, wrong tags (default 0.244,0.6,0.156: 75.6%% missing or wrong)",
    )
    parser.add_argument(
        "--transfer-syntax",
        default="explicit",
        choices=["explicit", "implicit", "rle", "jpeg2000", "jpegls"],
    )
    parser.add_argument("--kind", choices=["axial", "localizer"], default="axial")
    parser.add_argument("--sop-class", choices=["ct", "sc", "mr"], default="ct")
    parser.add_argument(
        "--confounder",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="force a confounder in every series (repeatable), e.g. vessel_calcium=heavy, "
        "intracranial_calcium=choroid_plexus+pineal, kvp=80, pet_ct=yes, brain=yes, tilt=15, "
        "arms=up, bolus=weak, thyroid_hu=110, beam_hardening=2 (default: drawn)",
    )
    parser.add_argument(
        "--preview", action="store_true", help="write previews/<series>.png montages"
    )
    parser.add_argument("-j", "--jobs", type=int, default=1, help="parallel worker processes")


@dataclass(frozen=True)
class Job:
    index: int
    folder: Path
    preview: Path | None
    spec: dict[str, Any]


def run(args: argparse.Namespace, settings: Settings) -> int:
    import numpy as np
    from tqdm import tqdm

    from ivcontrast.synth.manifest import write_manifest

    out: Path = args.out
    if (out / "manifest.csv").exists():
        raise CommandError(f"{out}: already holds a manifest.csv; choose another folder")
    if args.count < 1:
        raise CommandError(f"--count {args.count}: must be at least 1")
    if args.jobs < 1:
        raise CommandError(f"--jobs {args.jobs}: must be at least 1")
    common = _common_spec(args)
    rng = np.random.default_rng([args.seed, 0xC0])
    jobs = []
    phases = _phases(args)
    for i in range(args.count):
        seed = args.seed + i
        if args.multiphase:
            patient, k = divmod(i, len(MULTIPHASE))
            phase = MULTIPHASE[k]
            anatomy_seed = args.seed + patient * len(MULTIPHASE)
        else:
            phase = phases[i % len(phases)] if phases else _draw_phase(rng, args.contrast)
            anatomy_seed = seed
        patient_no = i // len(MULTIPHASE) if args.multiphase else i
        region = args.region if args.region != "mixed" else ("chest", "headneck")[patient_no % 2]
        name = f"{i:04d}_{region}_{phase}"
        spec = dict(common, region=region, phase=phase, seed=seed, anatomy_seed=anatomy_seed)
        preview = out / "previews" / f"{name}.png" if args.preview else None
        jobs.append(Job(i, out / name, preview, spec))
    _check_spec(jobs[0])
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(jobs), unit="series", file=sys.stderr, disable=None)
    try:
        if args.jobs == 1:
            for job in jobs:
                rows.append(generate(job))
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=args.jobs) as pool:
                for row in pool.map(generate, jobs):
                    rows.append(row)
                    bar.update(1)
    finally:
        bar.close()
        if rows:
            write_manifest(out / "manifest.csv", rows)
    files = sum(int(r["files"]) for r in rows)
    positives = sum(1 for r in rows if r["contrast"])
    print(f"wrote {len(rows)} series ({files} files; {positives} with contrast) to {out}")
    print(f"manifest: {out / 'manifest.csv'}")
    if args.preview:
        print(f"previews: {out / 'previews'}")
    return 0


def generate(job: Job) -> dict[str, Any]:
    """Write one series; returns its manifest row. Runs in worker processes."""
    from ivcontrast.synth import SeriesSpec, SyntheticSeries

    series = SyntheticSeries(SeriesSpec(**job.spec))
    paths = series.write(job.folder, preview=job.preview)
    row = series.plan.manifest_row()
    row.update(
        index=job.index,
        folder=str(job.folder),
        files=len(paths),
        preview="" if job.preview is None else str(job.preview),
    )
    return row


def _common_spec(args: argparse.Namespace) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "matrix": args.matrix,
        "slices": args.slices,
        "thickness": args.thickness,
        "spacing": args.spacing,
        "fov": args.fov,
        "noise": args.noise,
        "tag": args.tag,
        "transfer_syntax": args.transfer_syntax,
        "kind": args.kind,
        "sop_class": args.sop_class,
    }
    if args.tag_rates is not None:
        try:
            rates = tuple(float(v) for v in args.tag_rates.split(","))
        except ValueError:
            raise CommandError(
                f"--tag-rates {args.tag_rates}: expected three numbers C,M,W"
            ) from None
        spec["tag_rates"] = rates
    from ivcontrast.synth.confounders import parse_confounder

    for text in args.confounder:
        try:
            key, value = parse_confounder(text)
        except ValueError as exc:
            raise CommandError(f"--confounder {exc}") from None
        spec[key] = value
    return spec


def _phases(args: argparse.Namespace) -> list[str]:
    if args.phase is None:
        return []
    phases = [p.strip() for p in args.phase.split(",") if p.strip()]
    bad = [p for p in phases if p not in PHASES]
    if bad or not phases:
        raise CommandError(f"--phase {args.phase}: expected phases from {', '.join(PHASES)}")
    return phases


def _draw_phase(rng: Any, contrast: str) -> str:
    if contrast == "no" or (contrast == "mixed" and rng.random() < 0.5):
        return "none"
    names, weights = zip(*CONTRAST_PHASES, strict=True)
    return str(names[int(rng.choice(len(names), p=list(weights)))])


def _check_spec(job: Job) -> None:
    """Validate the options before writing anything (series differ only in region, phase
    and seeds, which are valid by construction); a bad value is a user error."""
    from ivcontrast.synth import SeriesSpec

    try:
        SeriesSpec(**job.spec)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
