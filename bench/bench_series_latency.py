"""From "series complete" to its result row, on this machine's CPU, with the real worker.

A 300-slice 512x512 synthetic chest series is written and indexed as the listener would;
then, ``--repeats`` times, the series is queued as the completion sweep queues it (a new
version and its ``check`` job) and the worker (model loaded once, as in ``ivcontrast
worker``) runs the check job and the classify job. The latency is the time from the check
job's release (the series found eligible, the classify job available) to the release of the
classify job, which commits the result row: the median is the figure (target <= 3 s).

In the same run, the FACTS.md anchor: EfficientNet-B4 at 256 px over all 300 slices in
ONNX Runtime alone (~17 s on this machine), measured on ``--anchor-slices`` slices of a
random-weight B4 and scaled to 300; and the pipeline's effect: a backlog of ``--backlog``
series classified with the prefetch pipeline and without it (series per second).

The model is the bundled default, or with ``--model`` any package; without either, a
random-weight EfficientNet-B0 package with the default preprocessing is exported (same
speed as a trained one). Load average is printed: the machine is shared.

    .venv/bin/python bench/bench_series_latency.py             # ~3-5 minutes on 2 cores
    .venv/bin/python bench/bench_series_latency.py --no-anchor --workdir /tmp/lat
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from ivcontrast.classifier.backends import OnnxBackend
from ivcontrast.classifier.package import (
    CARD_FILE,
    DEFAULT_PACKAGE,
    ModelCard,
    export_package,
    load_package,
)
from ivcontrast.classifier.preprocess import PreprocessConfig
from ivcontrast.config import Settings, load_settings
from ivcontrast.scp.header import instance_header, read_file_header
from ivcontrast.scp.spool import relative_path
from ivcontrast.store.db import Database
from ivcontrast.store.ingest import record_instance
from ivcontrast.store.models import Instance, Job, Result, Series, SeriesState
from ivcontrast.store.queue import enqueue
from ivcontrast.store.values import StoredFile
from ivcontrast.synth import Phase, Region, SeriesSpec, write_series
from ivcontrast.worker.jobs import CHECK, CLASSIFY
from ivcontrast.worker.service import Worker, build_handlers

ANCHOR_SLICES_PER_S = 17.3  # FACTS.md: B4, 256 px, ONNX Runtime, 2 threads, batch 16
TARGET_S = 3.0


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def export_random(arch: str, config: PreprocessConfig, dest: Path) -> Path:
    """A random-weight package (cached in ``dest``): speed is the same as a trained one's."""
    if (dest / CARD_FILE).is_file():
        return dest
    from ivcontrast.classifier.networks import build_network

    net = build_network(arch, config.channels).eval()
    card = ModelCard(name=f"random-{arch}", version="0", architecture=arch, preprocess=config)
    export_package(net, card, dest, overwrite=True)
    return dest


def spool_series(db: Database, spool: Path, folder: Path) -> int:
    """Index the files of ``folder`` as the listener does; returns the series id."""
    for path in sorted(folder.iterdir()):
        ds, syntax = read_file_header(path)
        relative = relative_path(
            str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
        )
        target = spool / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, target)
        data = target.read_bytes()
        stored = StoredFile(relative, len(data), hashlib.sha256(data).hexdigest())
        record_instance(db, instance_header(ds, syntax), stored, None)
    with db.session() as session:
        return int(session.scalars(select(Series.id)).one())


def copies(db: Database, series_id: int, count: int) -> list[int]:
    """``count`` more series rows over the same files (a backlog without more synthesis)."""
    ids = []
    with db.write() as session:
        source = session.get(Series, series_id)
        assert source is not None
        instances = list(session.scalars(select(Instance).where(Instance.series_id == series_id)))
        for n in range(count):
            series = Series(
                series_uid=f"{source.series_uid}.{n + 1}",
                study_id=source.study_id,
                modality="CT",
                state=SeriesState.ELIGIBLE,
                instance_count=len(instances),
            )
            session.add(series)
            session.flush()
            session.add_all(
                Instance(
                    sop_instance_uid=f"{i.sop_instance_uid}.{n + 1}",
                    series_id=series.id,
                    sop_class_uid=i.sop_class_uid,
                    transfer_syntax_uid=i.transfer_syntax_uid,
                    path=i.path,
                    size_bytes=i.size_bytes,
                    sha256=i.sha256,
                )
                for i in instances
            )
            ids.append(series.id)
    return ids


def requeue(db: Database, series_id: int, kind: str) -> int:
    """A new version of the series with its ``kind`` job, as the sweep (or check) queues it."""
    with db.write() as session:
        series = session.get(Series, series_id)
        assert series is not None
        series.version += 1
        series.state = SeriesState.QUEUED if kind == CHECK else SeriesState.ELIGIBLE
        enqueue(session, kind, series_id, series.version)
        return series.version


def job_finished(db: Database, series_id: int, version: int, kind: str) -> datetime:
    with db.session() as session:
        finished = session.scalars(
            select(Job.finished_at).where(
                Job.series_id == series_id, Job.series_version == version, Job.kind == kind
            )
        ).one()
    assert finished is not None, f"{kind} job of version {version} did not finish"
    return finished


def latency_runs(
    settings: Settings, db: Database, series_id: int, repeats: int
) -> list[dict[str, float]]:
    worker = Worker(settings, db, build_handlers(settings, db), sweep=False)
    worker.start()
    runs = []
    try:
        for _ in range(repeats + 1):  # the first warms ONNX Runtime up; reported apart
            version = requeue(db, series_id, CHECK)
            while worker.turn():
                pass
            checked = job_finished(db, series_id, version, CHECK)
            classified = job_finished(db, series_id, version, CLASSIFY)
            with db.session() as session:
                result = session.scalars(
                    select(Result).where(
                        Result.series_id == series_id, Result.series_version == version
                    )
                ).one()
            runs.append(
                {
                    "latency": (classified - checked).total_seconds(),
                    "load": result.load_seconds or 0.0,
                    "preprocess": result.preprocess_seconds or 0.0,
                    "inference": result.inference_seconds or 0.0,
                    "physics": result.physics_seconds or 0.0,
                    "slices": float(result.slices_used),
                }
            )
    finally:
        worker.stop()
    return runs


def backlog_run(settings: Settings, db: Database, series_ids: list[int], pipelined: bool) -> float:
    """Seconds to classify one classify job per series, queued together."""
    handlers = build_handlers(settings, db)
    if not pipelined:
        classify = handlers[CLASSIFY]
        handlers[CLASSIFY] = lambda job: classify(job)  # not a ClassifySeries: no prefetch
    worker = Worker(settings, db, handlers, sweep=False)
    worker.start()
    try:
        for series_id in series_ids:
            requeue(db, series_id, CLASSIFY)
        t0 = time.perf_counter()
        while worker.turn():
            pass
        return time.perf_counter() - t0
    finally:
        worker.stop()


def anchor_seconds(workdir: Path, slices: int, threads: int) -> tuple[float, float]:
    """(B4 256 px slices/s in ONNX Runtime, seconds for 300 slices) on ``slices`` slices."""
    package = load_package(
        export_random("efficientnet-b4", PreprocessConfig(size=256), workdir / "b4-256")
    )
    backend = OnnxBackend(package.onnx_path, threads=threads, batch_size=16)
    x = np.random.default_rng(0).random((slices, 3, 256, 256), dtype=np.float32)
    backend.predict_logits(x[:16])  # warm-up
    t0 = time.perf_counter()
    backend.predict_logits(x)
    rate = slices / (time.perf_counter() - t0)
    return rate, 300 / rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model package (default: bundled or B0)")
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backlog", type=int, default=6, help="series in the backlog run")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads; 0 = all")
    parser.add_argument("--anchor-slices", type=int, default=48)
    parser.add_argument("--no-anchor", action="store_true")
    parser.add_argument(
        "--no-physics", action="store_true", help="without the blood-pool opinion (its cost)"
    )
    parser.add_argument("--workdir", type=Path, help="keep data and packages here (reused)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"start: {load()}")
        if args.model is not None:
            model = args.model
        elif (DEFAULT_PACKAGE / CARD_FILE).is_file():
            model = DEFAULT_PACKAGE
        else:
            model = export_random("efficientnet-b0", PreprocessConfig(), workdir / "b0-default")
        card = load_package(model, verify=False).card
        print(
            f"model: {card.name} {card.version} ({card.architecture}, {card.input_size} px, "
            f"{card.preprocess.num_slices or 'all'} slices) from {model}"
        )
        source = workdir / f"series-{args.slices}x{args.matrix}"
        if not source.is_dir():
            t0 = time.perf_counter()
            spec = SeriesSpec(
                region=Region.CHEST,
                phase=Phase.ARTERIAL,
                seed=3,
                matrix=args.matrix,
                slices=args.slices,
            )
            write_series(spec, source)
            print(
                f"wrote {args.slices} slices of {args.matrix}x{args.matrix} in "
                f"{time.perf_counter() - t0:.1f} s"
            )
        node = Path(tempfile.mkdtemp(dir=workdir, prefix="node-"))
        overrides: dict[str, Any] = {
            "data_dir": str(node),
            "classifier.model": str(model),
            "classifier.device": "cpu",
            "classifier.threads": args.threads,
            "classifier.physics": not args.no_physics,
        }
        settings = load_settings(env={}, overrides=overrides)
        db = Database(settings.db_url)
        db.upgrade()
        series_id = spool_series(db, settings.spool_path, source)

        runs = latency_runs(settings, db, series_id, args.repeats)
        cold, warm = runs[0], runs[1:]
        median = statistics.median(r["latency"] for r in warm)
        each = ", ".join(f"{r['latency']:.2f}" for r in warm)
        split = {
            k: statistics.median(r[k] for r in warm)
            for k in ("load", "preprocess", "inference", "physics")
        }
        print(
            f"series complete -> result row, {args.slices} slices {args.matrix}x{args.matrix}: "
            f"median {median:.2f} s of {len(warm)} "
            f"({each}; first after start "
            f"{cold['latency']:.2f} s); target <= {TARGET_S:g} s: "
            f"{'met' if median <= TARGET_S else 'NOT met'}"
        )
        print(
            f"  of which read+decode {split['load']:.2f} s, preprocess {split['preprocess']:.2f} s, "
            f"network {split['inference']:.2f} s ({int(warm[0]['slices'])} slices), "
            f"blood-pool opinion {split['physics']:.2f} s; "
            f"the rest is the store and the queue"
        )
        print(f"after latency runs: {load()}")

        if args.backlog > 1:
            ids = copies(db, series_id, args.backlog)
            times: dict[bool, list[float]] = {True: [], False: []}
            for pipelined in (False, True, False, True):
                times[pipelined].append(backlog_run(settings, db, ids, pipelined))
            seq, pipe = min(times[False]), min(times[True])
            print(
                f"backlog of {args.backlog} series: sequential {args.backlog / seq:.2f} series/s "
                f"({seq:.1f} s), prefetch pipeline {args.backlog / pipe:.2f} series/s "
                f"({pipe:.1f} s): x{seq / pipe:.2f} (best of 2 each)"
            )
            print(f"after backlog runs: {load()}")
        db.dispose()

        if not args.no_anchor:
            rate, anchor = anchor_seconds(workdir, args.anchor_slices, args.threads)
            print(
                f"anchor: EfficientNet-B4 256 px in ONNX Runtime alone: {rate:.1f} slices/s "
                f"here ({args.anchor_slices} slices), {anchor:.1f} s for 300 slices "
                f"(FACTS.md: {ANCHOR_SLICES_PER_S} slices/s, {300 / ANCHOR_SLICES_PER_S:.1f} s); "
                f"series latency is {anchor / median:.1f}x shorter than the anchor"
            )
            print(f"end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
