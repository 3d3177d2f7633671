"""``ivcontrast send``: send DICOM files or folders to any AE (C-STORE SCU).

Several associations run in parallel (``-j``); the presentation contexts proposed are the
SOP classes and transfer syntaxes of the files found. A summary (images/s, failures with
their statuses) goes to stdout; the exit status is 1 when any file was not stored.
Without ``--port``/``--aec`` it sends to this node's own listener (the ``scp`` settings).
"""

from __future__ import annotations

import argparse
import sys
import threading

from ivcontrast.commands import CommandError
from ivcontrast.config import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", help="DICOM files or folders (searched recursively)")
    parser.add_argument("--host", default="127.0.0.1", help="peer host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="peer port (default: scp.port)")
    parser.add_argument("--aec", default=None, help="called AE title (default: scp.ae_title)")
    parser.add_argument("--aet", default="IVCONTRAST-SCU", help="our (calling) AE title")
    parser.add_argument(
        "-j", "--associations", type=int, default=1, help="parallel associations (default 1)"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="network timeouts, seconds")
    parser.add_argument(
        "--max-pdu", type=int, default=0, help="largest PDU we accept; 0 = unlimited"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from ivcontrast.synth.sender import Sender, find_files

    port = settings.scp.port if args.port is None else args.port
    aec = settings.scp.ae_title if args.aec is None else args.aec
    if not 0 < port < 65536:
        raise CommandError(f"--port {port}: not a TCP port")
    if args.associations < 1:
        raise CommandError(f"--associations {args.associations}: must be at least 1")
    for title, flag in ((aec, "--aec"), (args.aet, "--aet")):
        if not 0 < len(title) <= 16 or "\\" in title:
            raise CommandError(f"{flag} {title!r}: an AE title has 1-16 characters, no backslash")
    try:
        total = len(find_files(args.paths))
    except FileNotFoundError as exc:
        raise CommandError(str(exc)) from None
    if total == 0:
        raise CommandError(f"{' '.join(args.paths)}: no files found")
    sender = Sender(
        args.host,
        port,
        called_ae=aec,
        calling_ae=args.aet,
        associations=args.associations,
        timeout=args.timeout,
        max_pdu=args.max_pdu,
    )
    lock = threading.Lock()
    with tqdm(total=total, unit="img", file=sys.stderr, disable=None) as bar:

        def progress(n: int) -> None:
            with lock:
                bar.update(n)

        try:
            report = sender.send(args.paths, progress=progress)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    mb = report.bytes_sent / 1e6
    print(
        f"sent {report.sent}/{report.files} images to {aec}@{args.host}:{port} in "
        f"{report.seconds:.2f} s ({report.images_per_second:.1f} images/s, {mb:.1f} MB, "
        f"{report.associations} associations)"
    )
    if report.not_dicom:
        print(f"left out: {report.not_dicom} files in the folders that are not DICOM")
    if report.warnings:
        print(f"warnings: {report.warnings} stored with a warning status")
    if report.failures:
        print(f"failed: {len(report.failures)}")
        for failure in report.failures:
            status = "-" if failure.status is None else f"0x{failure.status:04X}"
            print(f"  {failure.path}\t{status}\t{failure.reason}")
    return 0 if report.ok else 1
