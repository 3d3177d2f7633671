"""``ivcontrast classify`` on real files: a folder tree of synthetic series (CT, a localizer, MR,
stray files, a corrupt instance), the same CT as NIfTI and NRRD, and ../shared/realct.

The fixed-rule model package (tests/support/classify_data.py) makes the runs fast; the labels are
checked against the phantoms' truth with the bundled default model once it exists.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pydicom
import pytest

from ivcontrast.classifier.dicom_series import DicomSeries
from ivcontrast.classifier.package import load_package
from ivcontrast.classifier.preprocess import PreprocessConfig, plan_samples
from ivcontrast.cli import main
from ivcontrast.synth import Phase, Region, SeriesKind, SeriesSpec, SopClass, write_series
from tests.support.classify_data import bundled_model, corrupt_pixel_data, write_rule_package

REALCT = Path(__file__).resolve().parents[2].parent / "shared" / "realct"
CONFIG = PreprocessConfig(size=48, num_slices=12)


@dataclass
class Inputs:
    root: Path
    tree: Path
    model: Path
    series: dict[str, tuple[SeriesSpec, list[Path]]]  # name -> spec, files
    corrupt_file: Path
    nifti: Path
    nrrd: Path


def ct(region: str, phase: str, seed: int) -> SeriesSpec:
    return SeriesSpec(region=Region(region), phase=Phase(phase), seed=seed, matrix=64, slices=24)


def write_volumes(files: list[Path], nifti: Path, nrrd_path: Path) -> None:
    """The series as NIfTI (RAS affine) and NRRD (LPS): the same voxels, other conventions."""
    series = DicomSeries.open(files)
    geometry = series.geometry
    hu = series.read(range(geometry.n_slices))  # (z, rows = +y, cols = +x), canonical
    lps = np.ascontiguousarray(hu.transpose(2, 1, 0))  # (x, y, z)
    row_mm, col_mm = geometry.pixel_spacing
    step = geometry.slice_spacing
    nib.save(nib.Nifti1Image(lps, np.diag([-col_mm, -row_mm, step, 1.0])), nifti)
    nrrd.write(
        str(nrrd_path),
        lps,
        {
            "space": "left-posterior-superior",
            "space directions": np.diag([col_mm, row_mm, step]),
            "space origin": np.zeros(3),
        },
        index_order="F",
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    root = tmp_path_factory.mktemp("classify")
    tree = root / "tree"
    specs = {
        "chest_arterial": ct("chest", "arterial", 1),
        "headneck_none": ct("headneck", "none", 2),
        "nested/deeper/chest_none": ct("chest", "none", 3),
        "headneck_venous": ct("headneck", "portal_venous", 4),
        "scout": SeriesSpec(region=Region.CHEST, kind=SeriesKind.LOCALIZER, seed=5, matrix=64),
        "mr": SeriesSpec(
            region=Region.HEADNECK, sop_class=SopClass.MR, seed=6, matrix=64, slices=16
        ),
    }
    series = {name: (spec, write_series(spec, tree / name)) for name, spec in specs.items()}
    (tree / "notes.txt").write_text("not an image\n")
    (tree / "nested" / "manifest.csv").write_text("a,b\n1,2\n")
    # A corrupt instance at a slice the model input is taken from, in a series of its own.
    corrupt = write_series(ct("chest", "delayed", 7), root / "corrupt")
    z = DicomSeries.open(corrupt).geometry.z_mm
    victim = DicomSeries.open(corrupt).headers[int(plan_samples(z, CONFIG.num_slices)[5][0])].path
    corrupt_pixel_data(victim)
    nifti, nrrd_path = root / "chest_arterial.nii.gz", root / "chest_arterial.nrrd"
    write_volumes(series["chest_arterial"][1], nifti, nrrd_path)
    model = write_rule_package(root / "model", CONFIG).path
    return Inputs(root, tree, model, series, victim, nifti, nrrd_path)


def by_source(rows: list[dict]) -> dict[str, dict]:
    return {Path(r["source"]).name: r for r in rows}


def test_a_tree_of_series_volumes_and_a_corrupt_instance(
    inputs: Inputs, capsys: pytest.CaptureFixture[str]
) -> None:
    out = inputs.root / "rows.json"
    argv = [
        "classify",
        str(inputs.tree),
        str(inputs.root / "corrupt"),
        str(inputs.nifti),
        str(inputs.nrrd),
        "--model",
        str(inputs.model),
        "--format",
        "json",
        "--output",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 1  # the corrupt series failed; everything else went on
    err = capsys.readouterr().err
    rows = by_source(json.loads(out.read_text()))
    assert set(rows) == {
        "chest_arterial",
        "headneck_none",
        "chest_none",
        "headneck_venous",
        "scout",
        "mr",
        "corrupt",
        "chest_arterial.nii.gz",
        "chest_arterial.nrrd",
    }
    for name in ("chest_arterial", "headneck_none", "nested/deeper/chest_none", "headneck_venous"):
        files = inputs.series[name][1]
        row = rows[Path(name).name]
        header = pydicom.dcmread(files[0], stop_before_pixels=True)
        assert row["status"] == "classified" and row["reason"] is None
        assert row["series_uid"] == header.SeriesInstanceUID
        assert row["label"] == ("contrast" if row["probability"] >= 0.5 else "no_contrast")
        assert row["slices_used"] == len(row["slice_probabilities"]) <= CONFIG.num_slices
        assert row["slices_total"] == 24 and row["model_version"] == "0.0.1"
        agent = header.get("ContrastBolusAgent") or None
        assert row["tag"] == agent
        expected_tag = {None: "missing"}.get(agent)
        if agent is not None:
            says = agent.strip().upper() not in ("N", "NO", "NONE")
            expected_tag = "agrees" if says == (row["label"] == "contrast") else "disagrees"
        assert row["tag_status"] == expected_tag
        assert row["seconds"] > 0 and row["backend"].startswith("onnxruntime-cpu")
    assert rows["scout"]["status"] == "skipped" and rows["scout"]["reason"] == "localizer/scout"
    assert (rows["mr"]["status"], rows["mr"]["reason"]) == ("skipped", "not CT (modality MR)")
    corrupt = rows["corrupt"]
    assert corrupt["status"] == "failed" and corrupt["label"] is None
    assert str(inputs.corrupt_file) in corrupt["reason"] and "pixel data" in corrupt["reason"]
    assert str(inputs.corrupt_file) in err
    # The same voxels as NIfTI and NRRD get the same call as the DICOM series.
    dicom = rows["chest_arterial"]
    for volume in ("chest_arterial.nii.gz", "chest_arterial.nrrd"):
        row = rows[volume]
        assert (row["status"], row["tag"], row["tag_status"]) == ("classified", None, None)
        assert row["probability"] == pytest.approx(dicom["probability"], abs=1e-4)
        assert [p for _, p in row["slice_probabilities"]] == pytest.approx(
            [p for _, p in dicom["slice_probabilities"]], abs=1e-4
        )
    assert "classified 6 series, 2 skipped, 1 failed" in err
    assert "2 files that are not DICOM ignored" in err


def test_csv_table_and_exit_status(inputs: Inputs, capsys: pytest.CaptureFixture[str]) -> None:
    one = str(inputs.tree / "headneck_none")
    assert main(["classify", one, "--model", str(inputs.model), "--format", "csv", "-q"]) == 0
    [row] = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert row["status"] == "classified" and row["label"] in ("contrast", "no_contrast")
    assert float(row["probability"]) >= 0 and "slice_probabilities" not in row
    assert main(["classify", one, "--model", str(inputs.model), "-q"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["SOURCE", "SERIES_UID", "STATUS", "LABEL"]
    assert len(table) == 2 and "classified" in table[1]


def test_files_named_one_by_one_and_unreadable_inputs(
    inputs: Inputs, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [str(p) for p in inputs.series["chest_arterial"][1]]
    notes = str(inputs.tree / "notes.txt")
    missing = str(inputs.root / "no-such-folder")
    argv = ["classify", *files, notes, missing, "--model", str(inputs.model), "--format", "json"]
    assert main([*argv, "-q"]) == 1
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    reasons = {r["source"]: r["reason"] for r in rows if r["status"] == "failed"}
    assert reasons == {notes: "not a DICOM, NIfTI or NRRD file", missing: "no such file or folder"}
    [classified] = [r for r in rows if r["status"] == "classified"]
    assert classified["source"] == str(inputs.tree / "chest_arterial")
    assert f"{missing}: no such file or folder" in captured.err


def test_no_model_package_is_a_clear_error(
    inputs: Inputs, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = inputs.root / "no-model"
    assert main(["classify", str(inputs.tree), "--model", str(missing)]) == 1
    assert f"{missing}: model package directory not found" in capsys.readouterr().err


def test_nothing_to_classify_is_an_error(
    inputs: Inputs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["classify", str(tmp_path / "empty"), "--model", str(inputs.model)]) == 1
    assert "no DICOM series, NIfTI or NRRD found" in capsys.readouterr().err


@pytest.mark.slow
def test_as_a_subprocess_with_a_progress_bar(inputs: Inputs) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IVCONTRAST_")}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ivcontrast",
            "classify",
            str(inputs.tree),
            "--model",
            str(inputs.model),
            "--format",
            "csv",
            "-j",
            "2",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert sorted(r["status"] for r in rows) == ["classified"] * 4 + ["skipped"] * 2
    assert "4/4" in out.stderr and "series/s" in out.stderr  # tqdm on stderr
    assert "classified 4 series, 2 skipped, 0 failed" in out.stderr


@pytest.mark.skipif(bundled_model() is None, reason="no bundled default model in this checkout")
@pytest.mark.slow
def test_the_bundled_model_calls_the_phantoms_right(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Realistic series (256 px, the whole region at 5 mm), not the 64 px slabs above: the
    # bundled model was trained on 256 and 512 px series covering the region.
    folders, expected = [], {}
    phases = ("none", "arterial", "portal_venous", "delayed")
    for i, (region, phase) in enumerate((r, p) for r in ("chest", "headneck") for p in phases):
        spec = SeriesSpec(
            region=Region(region), phase=Phase(phase), seed=21 + i, matrix=256, thickness=5.0
        )
        folder = tmp_path / f"{region}_{phase}"
        write_series(spec, folder)
        folders.append(str(folder))
        expected[folder.name] = "contrast" if spec.phase.contrast else "no_contrast"
    model = str(bundled_model())
    assert main(["classify", *folders, "--model", model, "--format", "json", "-q"]) == 0
    rows = by_source(json.loads(capsys.readouterr().out))
    assert {name: row["label"] for name, row in rows.items()} == expected


@pytest.mark.skipif(not REALCT.is_dir(), reason=f"{REALCT} not present")
@pytest.mark.slow
def test_the_real_scans(inputs: Inputs, capsys: pytest.CaptureFixture[str]) -> None:
    model = bundled_model() or inputs.model
    assert main(["classify", str(REALCT), "--model", str(model), "--format", "json", "-q"]) == 0
    captured = capsys.readouterr()
    rows = {Path(r["source"]).name: r for r in json.loads(captured.out)}
    assert {name: r["status"] for name, r in rows.items()} == {
        "itkelastix00": "classified",
        "example_ct_dicom": "classified",
        "example_ct.nii.gz": "classified",
        "example_ct_sm.nii.gz": "classified",
        "dcmqact_ge_head": "classified",
        "pancreasctcb001_abd": "classified",
        "ctpa_0117_chest": "classified",
        "kits00072_arterial_partial": "classified",
        "acrinfltbreast001_petct_t1": "classified",
        "acrinfltbreast001_petct_t2": "classified",
        # PET/CT attenuation CT, marked DERIVED\PRIMARY\AXIAL: axial slices, classified
        "acrinfltbreast013_petct_chest": "classified",
    }
    assert rows["dcmqact_ge_head"]["slices_total"] == 28
    assert rows["ctpa_0117_chest"]["tag"] == "OMNI"
    assert rows["itkelastix00"]["slices_total"] == 141
    assert rows["itkelastix00"]["tag_status"] == "missing"
    assert rows["example_ct_dicom"]["tag"] == "APPLIED"
    threshold = load_package(model).card.threshold
    for row in rows.values():
        network = "contrast" if row["probability"] >= threshold else "no_contrast"
        assert row["network_label"] == network
        assert row["label"] in (network, "review")
        assert (row["label"] == "review") == bool(row["review_reasons"])
        assert row["physics"]["found"] is True  # each of the ten shows a blood pool
