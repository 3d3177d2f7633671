"""``ivcontrast synth``: series folders, a manifest with true labels, preview PNGs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from ivcontrast.cli import main
from ivcontrast.synth.manifest import read_manifest


def test_synth_writes_series_manifest_and_previews(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    rc = main(
        [
            "synth",
            str(out),
            "-n",
            "4",
            "--matrix",
            "64",
            "--slices",
            "6",
            "--seed",
            "10",
            "--preview",
            "--phase",
            "none,arterial",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "wrote 4 series (24 files; 2 with contrast)" in printed
    rows = read_manifest(out / "manifest.csv")
    assert len(rows) == 4
    assert [r["region"] for r in rows] == ["chest", "headneck", "chest", "headneck"]
    assert [r["phase"] for r in rows] == ["none", "arterial", "none", "arterial"]
    assert [r["contrast"] for r in rows] == ["0", "1", "0", "1"]
    for row in rows:
        folder = Path(row["folder"])
        files = sorted(folder.glob("*.dcm"))
        assert len(files) == int(row["files"]) == 6
        ds = pydicom.dcmread(files[0])
        assert ds.SeriesInstanceUID == row["series_uid"]
        assert ds.StudyInstanceUID == row["study_uid"]
        assert ds.get("ContrastBolusAgent", "") == row["tag_value"]
        assert float(row["noise_sigma"]) > 0 and row["kernel"] == ds.ConvolutionKernel
        png = Image.open(row["preview"])
        assert png.size[0] >= 256 and np.asarray(png).std() > 10


def test_synth_multiphase_shares_one_patient(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mp"
    assert (
        main(
            [
                "synth",
                str(out),
                "-n",
                "3",
                "--multiphase",
                "--matrix",
                "32",
                "--slices",
                "2",
                "--region",
                "chest",
            ]
        )
        == 0
    )
    rows = read_manifest(out / "manifest.csv")
    assert [r["phase"] for r in rows] == ["none", "arterial", "portal_venous"]
    assert len({r["study_uid"] for r in rows}) == 1
    assert len({r["series_uid"] for r in rows}) == 3


def test_synth_refuses_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", str(tmp_path / "a"), "--matrix", "4"]) == 1
    assert "matrix" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "b"), "--phase", "venous"]) == 1
    assert "--phase" in capsys.readouterr().err
    out = tmp_path / "c"
    assert main(["synth", str(out), "--matrix", "32", "--slices", "1"]) == 0
    assert main(["synth", str(out), "--matrix", "32", "--slices", "1"]) == 1
    assert "manifest" in capsys.readouterr().err


def test_synth_as_a_subprocess_in_parallel(tmp_path: Path) -> None:
    out = tmp_path / "sub"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ivcontrast",
            "synth",
            str(out),
            "-n",
            "2",
            "-j",
            "2",
            "--matrix",
            "48",
            "--slices",
            "3",
            "--seed",
            "5",
            "--transfer-syntax",
            "rle",
            "--contrast",
            "yes",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = read_manifest(out / "manifest.csv")
    assert len(rows) == 2 and all(r["contrast"] == "1" for r in rows)
    assert all(r["phase"] in ("arterial", "portal_venous", "delayed") for r in rows)
    ds = pydicom.dcmread(next(Path(rows[0]["folder"]).glob("*.dcm")))
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5"


def test_synth_forces_confounders_into_the_manifest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["synth", str(out), "-n", "2", "--region", "headneck", "--contrast", "no"]
    args += ["--matrix", "64", "--slices", "4", "--preview"]
    for forced in ("vessel_calcium=heavy", "intracranial_calcium=choroid_plexus+pineal"):
        args += ["--confounder", forced]
    args += ["--confounder", "kvp=80", "--confounder", "brain=yes", "--confounder", "tilt=12"]
    assert main(args) == 0
    for row in read_manifest(out / "manifest.csv"):
        assert row["vessel_calcium"] == "heavy"
        assert row["intracranial_calcium"] == "choroid_plexus+pineal"
        assert (row["kvp"], row["brain"], row["tilt"]) == ("80", "1", "12")
        ds = pydicom.dcmread(sorted(Path(row["folder"]).glob("*.dcm"))[0])
        assert float(ds.KVP) == 80 and float(ds.GantryDetectorTilt) == 12
    assert main(["synth", str(tmp_path / "bad"), "--confounder", "colour=blue"]) != 0
