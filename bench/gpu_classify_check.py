"""GPU check: ``ivcontrast classify`` over 20 series of 300 slices on CUDA, end to end against the
bare model, in one run (well under 10 minutes on an H100/H200 host with 16 cores).

1. Writes ``--series`` synthetic 300-slice 512x512 series (chest and head-and-neck, with and
   without contrast) with one process per core.
2. Two packages of the same network: the deployed one (the bundled default, or ``--model``, or
   a random-weight export with the default preprocessing) and an all-slices variant of it
   (random weights, ``num_slices = 0``: every slice of every series goes through the network,
   the case where keeping the GPU fed is hard).
3. For each: ``ivcontrast classify <series> --device cuda`` as a subprocess; its summary line
   gives slices through the network per second end to end (finding the series, reading,
   decoding, preprocessing and inference; the model load before it is reported apart). Then,
   in this process, the bare model's slices/s on the same backend and batch size
   (``select_backend``: host arrays in, logits out, as the classifier calls it), and the
   ratio end-to-end / bare: target >= 0.5 for the all-slices package.

On the GPU machine, python3 holds torch, onnxruntime, numpy, scipy, tqdm, safetensors, onnx,
onnxscript, pillow and markupsafe; carry the rest as wheels (see device README). Here, once::

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d .whl pydicom==3.0.2 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
      typing-inspection==0.4.5 typing-extensions==4.16.0 SQLAlchemy==2.1.9 alembic==1.20.1 \
      Mako==1.4.3 monai==1.6.1 nibabel==5.4.2 pynrrd==1.1.3

then run there (carry ``.whl``; timeout_s 600)::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 \
      && python3 bench/gpu_classify_check.py --out $OUT/gpu_classify.json

The CPU path, with tiny sizes, runs here in about a minute::

    .venv/bin/python bench/gpu_classify_check.py --device cpu --series 2 --slices 24 --matrix 128
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ivcontrast.classifier.backends import select_backend
from ivcontrast.classifier.package import (
    CARD_FILE,
    DEFAULT_PACKAGE,
    ModelCard,
    export_package,
    load_package,
)
from ivcontrast.classifier.preprocess import PreprocessConfig
from ivcontrast.synth import Phase, Region, SeriesSpec, write_series

TARGET_RATIO = 0.5
SUMMARY = re.compile(
    r"in (?P<elapsed>[\d.]+) s \(finding series (?P<scan>[\d.]+) s, pipeline "
    r"(?P<pipeline>[\d.]+) s; model loaded in (?P<load>[\d.]+) s before\): "
    r"(?P<slices>\d+) slices through the network"
)
SPECS = (
    ("chest", "arterial"),
    ("headneck", "none"),
    ("chest", "none"),
    ("headneck", "portal_venous"),
)


def write_one(args: tuple[int, int, int, str]) -> str:
    index, slices, matrix, folder = args
    region, phase = SPECS[index % len(SPECS)]
    spec = SeriesSpec(
        region=Region(region), phase=Phase(phase), seed=1000 + index, matrix=matrix, slices=slices
    )
    write_series(spec, Path(folder) / f"series-{index:02d}")
    return folder


def generate(folder: Path, count: int, slices: int, matrix: int) -> float:
    """Write the series (cached: a folder that has them all is kept); returns seconds."""
    done = [p for p in folder.glob("series-*") if len(list(p.iterdir())) == slices]
    if len(done) >= count:
        return 0.0
    t0 = time.perf_counter()
    jobs = [(i, slices, matrix, str(folder)) for i in range(count)]
    with ProcessPoolExecutor(max_workers=min(count, os.cpu_count() or 1)) as pool:
        list(pool.map(write_one, jobs))
    return time.perf_counter() - t0


def export_random(card: ModelCard, config: PreprocessConfig, dest: Path) -> Path:
    if (dest / CARD_FILE).is_file():
        return dest
    from ivcontrast.classifier.networks import build_network

    net = build_network(card.architecture, config.channels, card.dropout).eval()
    random_card = ModelCard(
        name=f"random-{card.architecture}",
        version="0",
        architecture=card.architecture,
        preprocess=config,
        threshold=card.threshold,
        aggregation=card.aggregation,
    )
    export_package(net, random_card, dest, overwrite=True)
    return dest


def end_to_end(series: Path, model: Path, device: str, jobs: int, out: Path) -> dict[str, float]:
    command = [
        sys.executable,
        "-m",
        "ivcontrast",
        "--log-level",
        "WARNING",
        "classify",
        str(series),
        "--device",
        device,
        "--model",
        str(model),
        "--format",
        "json",
        "--output",
        str(out),
        "--quiet",
        "--jobs",
        str(jobs),
    ]
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=540)
    wall = time.perf_counter() - t0
    found = SUMMARY.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(
            f"ivcontrast classify failed ({done.returncode}):\n{done.stderr[-3000:]}"
        )
    figures = {k: float(v) for k, v in found.groupdict().items()}
    rows = json.loads(out.read_text())
    figures["series"] = float(sum(r["status"] == "classified" for r in rows))
    figures["rate"] = figures["slices"] / figures["elapsed"]
    figures["wall"] = wall
    return figures


def bare_model(model: Path, device: str, slices: int) -> tuple[float, str, int]:
    """Slices/s of the backend alone on random input: (rate, backend name, batch size)."""
    package = load_package(model, verify=False)
    backend = select_backend(device, package)
    card = package.card
    batch = 256 if device == "cuda" else 32
    x = np.random.default_rng(0).random(
        (slices, card.input_channels, card.input_size, card.input_size), dtype=np.float32
    )
    backend.predict_logits(x[: 2 * batch])  # warm-up: kernels, allocator
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        backend.predict_logits(x)
        best = max(best, slices / (time.perf_counter() - t0))
    return best, backend.name, batch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=20)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--model", type=Path, help="deployed package (default: the bundled one)")
    parser.add_argument(
        "--jobs",
        default="0,15",
        help="classify -j values tried on the all-slices package, comma-separated (0 = automatic)",
    )
    parser.add_argument("--bare-slices", type=int, default=0, help="0 = 2048 on CUDA, 64 on CPU")
    parser.add_argument("--workdir", type=Path, help="keep series and packages here (reused)")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    t_start = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="gpu-classify-") as tmp:
        work = args.workdir or Path(tmp)
        series = work / f"series-{args.slices}x{args.matrix}"
        series.mkdir(parents=True, exist_ok=True)
        print(f"host: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")
        seconds = generate(series, args.series, args.slices, args.matrix)
        print(
            f"{args.series} series of {args.slices} slices {args.matrix}x{args.matrix}: "
            f"written in {seconds:.1f} s"
        )

        deployed = args.model or (
            DEFAULT_PACKAGE if (DEFAULT_PACKAGE / CARD_FILE).is_file() else None
        )
        if deployed is None:
            default_card = ModelCard(
                name="default",
                version="0",
                architecture="efficientnet-b0",
                preprocess=PreprocessConfig(),
            )
            deployed = export_random(default_card, PreprocessConfig(), work / "deployed-random")
        card = load_package(deployed, verify=False).card
        every = export_random(card, replace(card.preprocess, num_slices=0), work / "all-slices")
        jobs = [int(j) for j in args.jobs.split(",")]
        runs = [(f"all slices, -j {j}", every, j) for j in jobs] + [("deployed", deployed, 0)]
        bare_slices = args.bare_slices or (2048 if args.device == "cuda" else 64)

        figures: dict[str, Any] = {
            "device": args.device,
            "series": args.series,
            "slices_per_series": args.slices,
            "matrix": args.matrix,
        }
        bare: dict[Path, tuple[float, str, int]] = {}
        for n, (name, package, j) in enumerate(runs):
            pcard = load_package(package, verify=False).card
            e2e = end_to_end(series, package, args.device, j, work / f"rows-{n}.json")
            if package not in bare:
                bare[package] = bare_model(package, args.device, bare_slices)
            rate, backend, batch = bare[package]
            ratio = e2e["rate"] / rate
            figures[name] = {
                "model": f"{pcard.name} {pcard.version}",
                "architecture": pcard.architecture,
                "input_size": pcard.input_size,
                "num_slices": pcard.preprocess.num_slices,
                "end_to_end": e2e,
                "bare_slices_per_s": rate,
                "backend": backend,
                "batch": batch,
                "ratio": ratio,
            }
            print(
                f"[{name}] {pcard.name} {pcard.version} ({pcard.architecture}, {pcard.input_size} px, "
                f"{pcard.preprocess.num_slices or 'all'} slices per series) on {backend}:\n"
                f"  end to end: {int(e2e['series'])} series, {int(e2e['slices'])} slices through the "
                f"network in {e2e['elapsed']:.2f} s (finding series {e2e['scan']:.2f} s) = "
                f"{e2e['rate']:.0f} slices/s, {e2e['series'] / e2e['elapsed']:.2f} series/s; model "
                f"load {e2e['load']:.2f} s, process wall {e2e['wall']:.1f} s\n"
                f"  bare model (batch {batch}, host arrays in, logits out): {rate:.0f} slices/s\n"
                f"  ratio end to end / bare: {ratio:.2f}"
                + (
                    f" (target >= {TARGET_RATIO}: {'met' if ratio >= TARGET_RATIO else 'NOT met'})"
                    if package == every
                    else " (the network idles by design: slices are sampled)"
                )
            )
        figures["seconds"] = time.perf_counter() - t_start
        print(f"done in {figures['seconds']:.0f} s")
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
