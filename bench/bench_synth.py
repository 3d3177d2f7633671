"""Benchmark of the phantom generator (and optionally the sender).

Generates a 300-slice 512x512 series slice by slice, writing the files, and prints the
time, slices/s and the ratio to the 10 s target. Pin it to one core as the target says:

    taskset -c 0 .venv/bin/python bench/bench_synth.py
    taskset -c 0 .venv/bin/python bench/bench_synth.py --region headneck --phase arterial
    .venv/bin/python bench/bench_synth.py --send      # also C-STORE to DCMTK storescp

``--send`` starts ``storescp`` (DCMTK, TCP_NODELAY=1) on a free loopback port and sends
the written series with 1 and 4 associations.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ivcontrast.synth import SeriesSpec, SyntheticSeries
from ivcontrast.synth.sender import Sender

TARGET_SECONDS = 10.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--region", default="chest", choices=["chest", "headneck"])
    parser.add_argument("--phase", default="portal_venous")
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--transfer-syntax", default="explicit")
    parser.add_argument("--send", action="store_true", help="also send the series to storescp")
    args = parser.parse_args(argv)

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    spec = SeriesSpec(
        region=args.region,
        phase=args.phase,
        seed=args.seed,
        matrix=args.matrix,
        slices=args.slices,
        thickness=1.0,
        transfer_syntax=args.transfer_syntax,
    )
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        out = Path(tmp) / "series"
        t0 = time.perf_counter()
        series = SyntheticSeries(spec)
        t1 = time.perf_counter()
        paths = series.write(out)
        t2 = time.perf_counter()
        size = sum(p.stat().st_size for p in paths) / 1e6
        total = t2 - t0
        print(f"cpus: {cpus or 'unknown'} (pin with taskset -c 0 for the one-core figure)")
        print(
            f"series: {args.region} {args.phase}, {len(paths)} slices of {args.matrix}x{args.matrix}, "
            f"{args.transfer_syntax}, {size:.1f} MB"
        )
        print(f"setup (anatomy, noise banks): {t1 - t0:.2f} s")
        print(
            f"render + encode + write:      {t2 - t1:.2f} s ({len(paths) / (t2 - t1):.1f} slices/s)"
        )
        print(f"total:                        {total:.2f} s ({len(paths) / total:.1f} slices/s)")
        print(
            f"target {TARGET_SECONDS:.0f} s for 300 slices: {total / TARGET_SECONDS * 300 / len(paths):.2f} of it "
            f"({'met' if total * 300 / len(paths) < TARGET_SECONDS else 'NOT met'})"
        )
        if args.send:
            bench_send(out)
    return 0


def bench_send(folder: Path) -> None:
    exe = shutil.which("storescp")
    if exe is None:
        print("send: storescp (DCMTK) not found; skipped")
        return
    for associations in (1, 4):
        rx = folder.parent / f"rx{associations}"
        rx.mkdir()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(
            [exe, "-aet", "STORESCP", "-od", str(rx), str(port)],
            env=dict(os.environ, TCP_NODELAY="1"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            report = Sender(
                "127.0.0.1", port, called_ae="STORESCP", associations=associations
            ).send([folder])
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        print(
            f"send to storescp, {associations} association(s): {report.sent}/{report.files} in "
            f"{report.seconds:.2f} s ({report.images_per_second:.0f} images/s, "
            f"{report.bytes_sent / 1e6 / report.seconds:.0f} MB/s), failures {len(report.failures)}"
        )


if __name__ == "__main__":
    sys.exit(main())
