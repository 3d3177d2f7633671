#!/usr/bin/env python
"""Listener throughput: DCMTK storescp vs pynetdicom's storescp app vs ``ivcontrast scp``.

One run sends the same 300-slice 512x512 CT series (int16, ~150 MB) with DCMTK
``storescu`` (TCP_NODELAY=1) over loopback to
  (a) DCMTK ``storescp`` (TCP_NODELAY=1, one process),
  (b) pynetdicom's ``storescp`` app (``python -m pynetdicom storescp``),
  (c) ``ivcontrast scp`` (durable spool writes and indexing on),
and prints images/s for each with the ratios c/a and c/b; then 4 concurrent associations
(4 copies of the series with their own UIDs, so every instance is new to ivcontrast)
with the aggregate images/s; the listener's peak RSS per process; and the duration of
one ingest transaction on SQLite. Each figure is the median of ``--rounds`` runs, each
against a freshly started receiver with an empty store; the rounds are interleaved and
the page cache is synced before each run. Each receiver's CPU time per image is printed
too: it varies less than the rates when other work shares the machine.

    .venv/bin/python -m bench.bench_scp [--rounds 3] [--processes 0]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.support import dicom_factory

SLICES = 300


def dcmtk(tool: str) -> str:
    """The DCMTK binary, not the pynetdicom app of the same name in the virtualenv."""
    venv_bin = Path(sys.prefix) / "bin"
    for folder in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin"]:
        candidate = Path(folder) / tool
        if Path(folder).resolve() == venv_bin.resolve() or not candidate.is_file():
            continue
        out = subprocess.run([candidate, "--version"], capture_output=True, text=True)
        if "dcmtk" in (out.stdout + out.stderr).lower():
            return str(candidate)
    raise SystemExit(f"DCMTK {tool} not found (apt-get install dcmtk)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"receiver on port {port} did not start")


@dataclass
class Receiver:
    name: str
    ae_title: str
    command: Callable[[int, Path], list[str]]
    env: dict[str, str]
    ready: Callable[[Path], bool] | None = None  # beyond the port accepting


def receivers(processes: int) -> list[Receiver]:
    storescp = dcmtk("storescp")
    ivcontrast = [sys.executable, "-m", "ivcontrast"]
    return [
        Receiver(
            "(a) DCMTK storescp",
            "STORESCP",
            lambda port, work: [storescp, "-od", str(work), str(port)],
            {"TCP_NODELAY": "1"},
        ),
        Receiver(
            "(b) pynetdicom storescp",
            "STORESCP",
            lambda port, work: [
                sys.executable,
                "-m",
                "pynetdicom",
                "storescp",
                str(port),
                "-od",
                str(work),
            ],
            {},
        ),
        Receiver(
            "(c) ivcontrast scp",
            "IVCONTRAST",
            lambda port, work: [
                *ivcontrast,
                "--data-dir",
                str(work),
                "scp",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--processes",
                str(processes),
            ],
            {},
            ready=lambda work: "listening on" in (work / "stderr.txt").read_text(errors="replace"),
        ),
    ]


def start(receiver: Receiver, work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **receiver.env}
    env = {k: v for k, v in env.items() if not k.startswith("IVCONTRAST_")}
    stderr = (work / "stderr.txt").open("wb")
    proc = subprocess.Popen(
        receiver.command(port, work),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        start_new_session=True,
    )
    wait_port(port)
    if receiver.ready is not None:
        deadline = time.monotonic() + 60
        while not receiver.ready(work):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"{receiver.name} did not start: see {work / 'stderr.txt'}")
            time.sleep(0.05)
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def send(storescu: str, ae_title: str, port: int, folders: list[Path]) -> float:
    """Send each folder on its own association, all at once; returns the wall time."""
    env = {**os.environ, "TCP_NODELAY": "1"}
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [storescu, "+sd", "-aec", ae_title, "127.0.0.1", str(port), str(folder)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for folder in folders
    ]
    failed = [p.communicate()[1].decode(errors="replace") for p in procs if p.wait() != 0]
    elapsed = time.perf_counter() - started
    if failed:
        raise SystemExit(f"storescu failed: {failed[0][-2000:]}")
    return elapsed


def family(pid: int) -> list[int]:
    """A process and its children."""
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                pids.append(int(entry.name))
    return pids


def family_cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by a process and its children."""
    total = 0
    for p in family(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def family_rss_mb(pid: int) -> dict[int, float]:
    """Peak RSS (VmHWM) of a process and its children, MB."""
    out = {}
    for p in family(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    out[p] = int(line.split()[1]) / 1024
        except OSError:
            continue
    return out


def count_received(receiver: Receiver, work: Path) -> int:
    if receiver.ready is None:
        return sum(1 for f in work.iterdir() if f.is_file() and f.name != "stderr.txt")
    import sqlite3

    with sqlite3.connect(work / "ivcontrast.db") as conn:
        return int(conn.execute("select count(*) from instances").fetchone()[0])


def ingest_latency(samples: int = 500) -> tuple[float, float]:
    """Median and p99 of one record_instance transaction on SQLite, ms."""
    from ivcontrast.store import ingest, values
    from ivcontrast.store.db import Database

    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/bench.db")
        db.upgrade()
        info = values.AssociationInfo("bench", "bench:1", "SCU", "IVCONTRAST", "127.0.0.1", 1)
        ingest.open_association(db, info)
        times = []
        for i in range(samples):
            header = values.InstanceHeader(
                sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                sop_instance_uid=f"1.2.3.4.{i + 1}",
                study_uid="1.2.3",
                series_uid="1.2.3.4",
                transfer_syntax_uid="1.2.840.10008.1.2.1",
                modality="CT",
                image_type="ORIGINAL\\PRIMARY\\AXIAL",
                rows=512,
                columns=512,
                instance_number=i + 1,
            )
            stored = values.StoredFile(f"1.2.3/1.2.3.4/{i + 1}.dcm", 525000, "0" * 64)
            t = time.perf_counter()
            ingest.record_instance(db, header, stored, info.id)
            times.append(time.perf_counter() - t)
        db.dispose()
    times.sort()
    return statistics.median(times) * 1000, times[int(len(times) * 0.99)] * 1000


def spool_write_latency(folder: Path, samples: int = 100) -> tuple[float, float]:
    """Median and p90 of one durable spool write of a 512x512 slice (write, fdatasync,
    rename, directory fsync), ms: what durability costs on this disk right now."""
    from ivcontrast.scp.spool import Spool

    body = os.urandom(512 * 512 * 2)
    times = []
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        spool = Spool(Path(tmp))
        spool.prepare()
        for i in range(samples):
            t = time.perf_counter()
            spool.write(f"1.2/1.2.3/1.2.3.{i + 1}.dcm", b"M" * 300, body)
            times.append(time.perf_counter() - t)
    times.sort()
    return statistics.median(times) * 1000, times[int(len(times) * 0.9)] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs per figure (median)")
    parser.add_argument(
        "--processes", type=int, default=0, help="ivcontrast listener processes (0 = per core)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    storescu = dcmtk("storescu")
    work = Path(tempfile.mkdtemp(prefix="bench-scp-"))
    print(f"generating {SLICES} CT slices 512x512 (x4 series) in {work} ...", flush=True)
    series = []
    for copy in range(4):
        folder = work / f"series{copy}"
        dicom_factory.write_files(dicom_factory.ct_series(SLICES, rows=512, columns=512), folder)
        series.append(folder)
    size_mb = sum(f.stat().st_size for f in series[0].iterdir()) / 1e6
    processes = args.processes or os.cpu_count() or 1
    print(
        f"series: {SLICES} images, {size_mb:.0f} MB; {os.cpu_count()} CPUs; "
        f"ivcontrast with {processes} listener processes\n",
        flush=True,
    )

    # Rounds are interleaved (a, b, c, then again) so that a change in the machine's load
    # during the run does not favour one receiver.
    rates: dict[tuple[str, int], list[float]] = {}
    cpu_ms: dict[tuple[str, int], list[float]] = {}
    rss: list[float] = []
    for round_ in range(args.rounds):
        for associations in (1, 4):
            for receiver in receivers(args.processes):
                rundir = work / f"{receiver.name[1]}-{associations}-{round_}"
                proc, port = start(receiver, rundir)
                try:
                    os.sync()  # start every run with no one's dirty pages left to flush
                    cpu_before = family_cpu_seconds(proc.pid)
                    elapsed = send(storescu, receiver.ae_title, port, series[:associations])
                    cpu = family_cpu_seconds(proc.pid) - cpu_before
                    if receiver.ready is not None:
                        rss.extend(family_rss_mb(proc.pid).values())
                finally:
                    stop(proc)
                received = count_received(receiver, rundir)
                expected = SLICES * associations
                if received != expected:
                    raise SystemExit(f"{receiver.name}: {received} of {expected} images stored")
                rate = expected / elapsed
                rates.setdefault((receiver.name, associations), []).append(rate)
                cpu_ms.setdefault((receiver.name, associations), []).append(cpu / expected * 1e3)
                shutil.rmtree(rundir, ignore_errors=True)
                print(
                    f"round {round_ + 1}: {receiver.name:26s} {associations} association(s): "
                    f"{rate:7.0f} images/s, receiver CPU {cpu / expected * 1e3:.2f} ms/image",
                    flush=True,
                )
    results = {
        r.name: {n: statistics.median(rates[(r.name, n)]) for n in (1, 4)}
        for r in receivers(args.processes)
    }

    a, b, c = (results[r.name] for r in receivers(args.processes))
    print()
    print(f"medians of {args.rounds} runs; CPU = receiver user+system CPU per image")
    print(f"{'':26s} {'1 assoc':>9s} {'4 assoc':>9s} {'4/1':>6s} {'CPU 1':>9s} {'CPU 4':>9s}")
    for name, res in results.items():
        c1 = statistics.median(cpu_ms[(name, 1)])
        c4 = statistics.median(cpu_ms[(name, 4)])
        print(
            f"{name:26s} {res[1]:9.0f} {res[4]:9.0f} {res[4] / res[1]:6.2f} "
            f"{c1:6.2f} ms {c4:6.2f} ms"
        )
    print(
        f"load average at the end: {os.getloadavg()[0]:.2f} (other work on this machine skews all figures)"
    )
    print()
    print(
        f"one association:   c/a = {c[1] / a[1]:.2f}   c/b = {c[1] / b[1]:.2f}   (target c/b >= 1.0)"
    )
    print(f"4 associations:    c/a = {c[4] / a[4]:.2f}   c/b = {c[4] / b[4]:.2f}")
    print(f"ivcontrast scaling, 4 associations / 1: {c[4] / c[1]:.2f}   (target >= 1.6 on 2 cores)")
    print(f"ivcontrast peak RSS per process: {max(rss):.0f} MB   (target <= 300 MB)")
    median, p99 = ingest_latency()
    print(f"ingest transaction (SQLite, one instance): median {median:.2f} ms, p99 {p99:.2f} ms")
    median, p90 = spool_write_latency(work)
    print(
        f"durable spool write of one slice (incl. fdatasync + directory fsync): "
        f"median {median:.2f} ms, p90 {p90:.2f} ms"
    )
    if args.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
