"""Generated hostile input against a listener process (``tests/support/scp_fuzz.py``).

Every case must get a proper answer (A-ASSOCIATE-RJ, A-ABORT, a DIMSE status, a release,
or a close where the peer closed or timed out), and after every case the listener must be
the same process and answer C-ECHO within 1 s; its memory stays within 64 MiB of where it
started, and nothing is written outside the spool. The fast lane runs a few hundred
cases; ``-m slow`` runs 1,200 more (``bench/fuzz_scp.py`` prints the counts by class).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import scp_fuzz
from tests.support.scp_child import ScpChild


@pytest.fixture
def node(tmp_path: Path) -> Iterator[ScpChild]:
    with ScpChild(
        tmp_path / "node", max_pdu=16384, handshake_timeout=scp_fuzz.HANDSHAKE_TIMEOUT
    ) as child:
        yield child


def check(report: scp_fuzz.FuzzReport) -> None:
    summary = "\n".join(report.lines())
    assert report.crashes == [], summary
    assert report.hangs == [], summary
    assert report.slow_echoes == [], summary
    assert report.stray == [], summary
    assert report.rss_max < report.rss_start + 64, summary
    for cls in ("associate", "framing", "dimse", "dataset", "connection"):
        assert report.counts[cls], f"no {cls} cases\n{summary}"


def run(node: ScpChild, count: int, seed: int) -> scp_fuzz.FuzzReport:
    fuzz = scp_fuzz.FuzzRun(node)
    fuzz.warm_up()
    return fuzz.run(scp_fuzz.generate(count, seed))


@pytest.mark.timeout(120)
def test_fuzz_fast(node: ScpChild) -> None:
    report = run(node, 300, seed=14)
    check(report)
    assert report.seconds < 60, "\n".join(report.lines())


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_fuzz_long(node: ScpChild, seed: int) -> None:
    check(run(node, 300, seed=1000 + seed))
