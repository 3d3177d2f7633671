"""The backup and restore procedure of deploy/OPERATIONS.md, on a running node.

An online SQLite backup (the guide's own command) is taken while the listener runs, more
instances arrive after it, the spool is copied afterwards; the pair restores to a node
that knows every instance on disk (the listener indexes the newer files at start).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pydicom
import pytest

from tests.support.deploy_harness import DEPLOY, ivcontrast
from tests.support.node_process import NodeProcess, clean_env
from tests.support.scp_harness import dcmtk, storescu

pytestmark = pytest.mark.slow

GUIDE = DEPLOY / "OPERATIONS.md"


def guide_backup_command() -> list[str]:
    """The SQLite online-backup command the guide gives for hosts without sqlite3."""
    found = re.search(r"`(python3 -c \"import sqlite3.*?\" SRC DST)`", GUIDE.read_text())
    assert found, "the guide lost its SQLite backup command"
    return shlex.split(found.group(1))


def listener(data_dir: Path, log: Path) -> NodeProcess:
    env = clean_env({"IVCONTRAST_DATA_DIR": str(data_dir), "IVCONTRAST_SCP_MIN_FREE_MB": "0"})
    argv = ivcontrast("scp", "--bind", "127.0.0.1", "--port", "0", "--processes", "1")
    return NodeProcess(argv, env, log)


def series_in(data_dir: Path) -> dict[str, int]:
    out = subprocess.run(
        [*ivcontrast("--data-dir", str(data_dir), "series", "--format", "json")],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {s["series_uid"]: s["instances"] for s in json.loads(out.stdout)}


def synth(out: Path, seed: int) -> list[Path]:
    from ivcontrast.cli import main

    assert main(["synth", str(out), "--matrix", "32", "--slices", "12", "--seed", str(seed)]) == 0
    return sorted(out.rglob("*.dcm"))


def test_online_backup_then_spool_copy_restores_everything(tmp_path: Path) -> None:
    dcmtk("storescu")
    node_dir, backup_dir, restored_dir = (
        tmp_path / "node",
        tmp_path / "backup",
        tmp_path / "restored",
    )
    first, second = synth(tmp_path / "a", 1), synth(tmp_path / "b", 2)
    uid = {
        name: str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
        for name, files in (("first", first), ("second", second))
    }
    with listener(node_dir, tmp_path / "scp.log") as scp:
        port = int(scp.wait_for(r"listening on 127\.0\.0\.1:(\d+)").group(1))
        assert len(storescu(port, first).succeeded) == len(first)
        # 1. The store, online (WAL mode: the backup is consistent while the listener writes).
        backup_dir.mkdir()
        command = guide_backup_command()
        source, target = node_dir / "ivcontrast.db", backup_dir / "ivcontrast.db"
        command[command.index("SRC")], command[command.index("DST")] = str(source), str(target)
        subprocess.run(command, check=True, timeout=60)
        # More instances arrive after the store's backup ...
        assert len(storescu(port, second).succeeded) == len(second)
        # 2. ... and are in the spool's copy, taken after it.
        shutil.copytree(
            node_dir / "spool", backup_dir / "spool", ignore=shutil.ignore_patterns(".incoming")
        )
        assert scp.stop() == 0

    with sqlite3.connect(target) as backup:
        assert backup.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    restored_dir.mkdir()
    shutil.copy(target, restored_dir / "ivcontrast.db")
    shutil.copytree(backup_dir / "spool", restored_dir / "spool")
    assert series_in(restored_dir) == {uid["first"]: len(first)}

    # Restore: starting a listener indexes the spool files the store's backup lacks.
    with listener(restored_dir, tmp_path / "restored.log") as scp:
        scp.wait_for(r"listening on 127\.0\.0\.1:\d+")
        assert f"reconcile: indexed {len(second)} spool files" in scp.log()
        assert scp.stop() == 0
    assert series_in(restored_dir) == {uid["first"]: len(first), uid["second"]: len(second)}
