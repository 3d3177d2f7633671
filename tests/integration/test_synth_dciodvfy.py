"""dicom3tools' dciodvfy finds no error in synthetic CT of either region and any variant.

CI installs dicom3tools; a missing dciodvfy fails these tests rather than skipping them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ivcontrast.synth import SeriesSpec, write_series

VARIANTS = {
    "chest-native": dict(region="chest", phase="none"),
    "chest-arterial-siemens": dict(
        region="chest", phase="arterial", manufacturer="SIEMENS", tag="correct"
    ),
    "chest-venous-ge-padding": dict(
        region="chest", phase="portal_venous", manufacturer="GE MEDICAL SYSTEMS"
    ),
    "neck-native-toshiba": dict(
        region="headneck", phase="none", manufacturer="TOSHIBA", tag="wrong"
    ),
    "neck-delayed-philips": dict(
        region="headneck", phase="delayed", manufacturer="Philips", tag="missing"
    ),
    "neck-arterial-1000": dict(
        region="headneck", phase="arterial", signed=False, rescale_intercept=-1000
    ),
    "chest-rle-prone": dict(
        region="chest", transfer_syntax="rle", patient_position="HFP", reverse=True
    ),
    "neck-j2k-tilt": dict(region="headneck", transfer_syntax="jpeg2000", tilt=10.0),
    "chest-derived": dict(region="chest", image_type=("DERIVED", "SECONDARY", "AXIAL")),
    "chest-localizer": dict(region="chest", kind="localizer"),
}


def dciodvfy(path: Path) -> list[str]:
    exe = shutil.which("dciodvfy")
    assert exe, "dciodvfy not found: install dicom3tools (Debian package dicom3tools)"
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    lines = (proc.stdout + proc.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_dciodvfy_reports_no_errors(tmp_path: Path, name: str) -> None:
    spec = SeriesSpec(seed=len(name), matrix=64, slices=2, **VARIANTS[name])  # type: ignore[arg-type]
    paths = write_series(spec, tmp_path / name)
    for path in paths:
        assert dciodvfy(path) == [], path


def test_dciodvfy_can_fail(tmp_path: Path) -> None:
    """The check has teeth: a CT image without its Type 1 Rescale Intercept is an error."""
    import pydicom

    path = write_series(SeriesSpec(seed=1, matrix=32, slices=1), tmp_path / "broken")[0]
    ds = pydicom.dcmread(path)
    del ds.RescaleIntercept
    ds.save_as(path)
    assert dciodvfy(path)
