#!/usr/bin/env python
"""Fuzz the DICOM listener: generated hostile input against one listener process.

    .venv/bin/python -m bench.fuzz_scp [--cases 1200] [--seed 14]

Starts ``ivcontrast scp`` (one process, scp.max_pdu 16384, scp.handshake_timeout 1 s) in
a temporary directory, sends the cases of ``tests/support/scp_fuzz.py`` (A-ASSOCIATE-RQ
fields, P-DATA framing, DIMSE command sets, data set bytes, connection behaviour) and
prints what the listener answered, counted by class, with crashes, hangs, stray files,
the slowest C-ECHO after a case and the listener's memory. Exit status 1 if any case
crashed or hung the listener, left a file outside the spool, or made C-ECHO take 1 s.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from tests.support import scp_fuzz
from tests.support.scp_child import ScpChild


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        with ScpChild(
            Path(folder) / "node", max_pdu=16384, handshake_timeout=scp_fuzz.HANDSHAKE_TIMEOUT
        ) as node:
            fuzz = scp_fuzz.FuzzRun(node)
            fuzz.warm_up()
            report = fuzz.run(scp_fuzz.generate(args.cases, args.seed))
            log = node.process.log()
    for line in report.lines():
        print(line)
    print(f"tracebacks in the listener's log: {log.count('Traceback')}")
    for error in sorted(set(re.findall(r" ERROR \S+ (\S+): (.{0,100})", log)))[:20]:
        print("    ERROR", *error)
    for item in report.hangs + report.crashes + report.slow_echoes + list(map(str, report.stray)):
        print("   ", item)
    failed = report.hangs or report.crashes or report.slow_echoes or report.stray
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
