#!/usr/bin/env python
"""Write-back throughput and memory: corrected copies of a 300-slice 512x512 CT series.

One run builds the series in a spool (with its store rows and a result), starts a real
Orthanc on loopback, and then times
  (a) DCMTK ``storescu`` (TCP_NODELAY=1) sending the original files to Orthanc: the
      network + PACS baseline, with no correction at all;
  (b) ``ivcontrast worker --once`` running the write-back job to Orthanc: read each
      spooled instance, correct it, write it to a staging file, stream it over one
      association, plus the SR report;
  (c) the same job to a folder destination (fsync + rename per file);
  (d) storescu and (e) the write-back job to DCMTK ``storescp`` instead of Orthanc, which
      takes images far faster than Orthanc does here and so shows the sender's own cost;
and prints images/s for each, the ratios b/a and e/d, and the worker's peak RSS (it should
stay flat: one instance at a time, never the series).

    .venv/bin/python -m bench.bench_writeback [--slices 300] [--size 512]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

from ivcontrast.config import load_settings
from ivcontrast.store.db import Database
from ivcontrast.store.models import Result
from ivcontrast.writeback import enqueue_writeback
from tests.support.orthanc import Orthanc, free_port
from tests.support.writeback_data import make_result, spool_series

DCMTK = {"storescu": "/usr/bin/storescu", "storescp": "/usr/bin/storescp"}


def run_worker(config: Path) -> tuple[float, float]:
    """Seconds and the peak RSS (MB) of one ``ivcontrast worker --once`` process."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "ivcontrast", "-c", str(config), "--log-level", "WARNING"),
            *("worker", "--once", "--no-sweep"),
        ]
    )
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("the worker failed")
    return seconds, usage.ru_maxrss / 1024


def storescu(files: list[Path], called_ae: str, port: int) -> float:
    """Seconds DCMTK storescu (TCP_NODELAY=1) takes to send ``files`` in one association."""
    start = time.perf_counter()
    subprocess.run(
        [
            DCMTK["storescu"],
            "-aet",
            "IVCONTRAST",
            "-aec",
            called_ae,
            "127.0.0.1",
            str(port),
            *map(str, files),
        ],
        check=True,
        env={**os.environ, "TCP_NODELAY": "1"},
    )
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    for tool in DCMTK:
        if not Path(DCMTK[tool]).exists():
            raise SystemExit(f"DCMTK {tool} not found (apt-get install dcmtk)")

    root = Path(tempfile.mkdtemp(prefix="ivc-bench-wb-"))
    try:
        orthanc = Orthanc(root / "orthanc")
        storescp_port = free_port()
        config = root / "ivcontrast.toml"
        config.write_text(
            f'data_dir = "{root / "data"}"\n'
            '[writeback]\nenabled = true\ntrigger = "all"\n'
            "[[writeback.destinations]]\n"
            f'kind = "dicom"\nname = "pacs"\nae_title = "{orthanc.aet}"\n'
            f'host = "127.0.0.1"\nport = {orthanc.dicom_port}\n'
            "[[writeback.destinations]]\n"
            f'kind = "folder"\nname = "folder"\npath = "{root / "out"}"\n'
            "[[writeback.destinations]]\n"
            f'kind = "dicom"\nname = "storescp"\nae_title = "RX"\n'
            f'host = "127.0.0.1"\nport = {storescp_port}\n'
        )
        settings = load_settings(config, env={})
        db = Database(settings.db_url)
        db.upgrade()
        spooled = spool_series(db, settings.spool_path, args.slices, size=args.size)
        megabytes = sum(p.stat().st_size for p in spooled.files) / 1e6
        print(f"series: {args.slices} slices of {args.size}x{args.size} int16, {megabytes:.0f} MB")

        def enqueue(destination: str) -> None:
            """Queue the job for one destination only, so that each run times one."""
            only = settings.writeback.model_copy(
                update={
                    "destinations": [
                        d for d in settings.writeback.destinations if d.name == destination
                    ]
                }
            )
            with db.write() as session:
                result = session.scalars(
                    select(Result).where(Result.series_id == spooled.series_id)
                ).first()
                if result is None:
                    result = make_result(spooled.series_id)
                    session.add(result)
                assert enqueue_writeback(session, only, result) == 1

        idle_seconds, idle_rss = run_worker(config)  # start-up and imports only

        (root / "storescp").mkdir()
        receiver = subprocess.Popen(
            [DCMTK["storescp"], "-aet", "RX", "-od", str(root / "storescp"), str(storescp_port)],
            env={**os.environ, "TCP_NODELAY": "1"},
        )
        time.sleep(0.5)
        d = storescu(spooled.files, "RX", storescp_port)
        enqueue("storescp")
        e, e_rss = run_worker(config)
        receiver.kill()
        receiver.wait()

        enqueue("folder")
        c, c_rss = run_worker(config)

        orthanc.start()
        a = storescu(spooled.files, orthanc.aet, orthanc.dicom_port)
        enqueue("pacs")
        b, b_rss = run_worker(config)
        orthanc.stop(kill=True)
        db.dispose()

        n = args.slices
        rows = [
            ("(a) storescu -> Orthanc, originals", a, None),
            ("(b) write-back -> Orthanc, copies + SR", b, b_rss),
            ("(c) write-back -> folder, copies + SR", c, c_rss),
            ("(d) storescu -> storescp, originals", d, None),
            ("(e) write-back -> storescp, copies + SR", e, e_rss),
        ]
        for name, seconds, rss in rows:
            line = f"{name:42s} {seconds:6.2f} s {n / seconds:6.0f} images/s"
            print(line + (f"  peak RSS {rss:.0f} MB" if rss else ""))
        print(f"idle worker (start-up, no job): {idle_seconds:.2f} s, peak RSS {idle_rss:.0f} MB")
        print(f"b/a = {a / b:.2f}   e/d = {d / e:.2f}   (write-back times include the start-up)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
