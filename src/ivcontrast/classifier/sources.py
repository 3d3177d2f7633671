"""Open whatever a user points at as a ``SliceSource``: DICOM files or a folder, NIfTI, NRRD."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ivcontrast.classifier.dicom_series import DicomSeries, group_series
from ivcontrast.classifier.errors import VolumeError
from ivcontrast.classifier.volume import SliceSource, read_nifti, read_nrrd

NIFTI_SUFFIXES = (".nii", ".nii.gz")
NRRD_SUFFIXES = (".nrrd", ".nhdr")


def volume_kind(path: str | os.PathLike[str]) -> str:
    """'nifti', 'nrrd' or 'dicom' (anything else: a DICOM file or a folder of them)."""
    name = Path(path).name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(NRRD_SUFFIXES):
        return "nrrd"
    return "dicom"


def open_source(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> SliceSource:
    """One volume from a NIfTI or NRRD file, a folder holding one DICOM series, or DICOM files.

    A folder is searched recursively and files in it that are not DICOM are ignored; a folder
    holding more than one series is an error naming them (use ``group_series`` to split it).
    Files named one by one must all be DICOM slices of one series.
    """
    items = [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]
    if len(items) == 1 and items[0].is_file():
        kind = volume_kind(items[0])
        if kind == "nifti":
            return read_nifti(items[0])
        if kind == "nrrd":
            return read_nrrd(items[0])
    files: list[Path] = []
    for item in items:
        if item.is_dir():
            files.extend(
                sorted(p for p in item.rglob("*") if p.is_file() and not p.name.startswith("."))
            )
        elif item.is_file():
            files.append(item)
        else:
            raise VolumeError(f"{item}: no such file or folder")
    if not any(item.is_dir() for item in items):
        # Files named one by one must all be slices of one series: errors name the misfit.
        return DicomSeries.open(files)
    groups = group_series(files)
    where = ", ".join(map(str, items))
    if not groups:
        raise VolumeError(f"{where}: no DICOM series found")
    if len(groups) > 1:
        listing = ", ".join(f"{uid} ({len(g)} files)" for uid, g in groups.items())
        raise VolumeError(f"{where}: holds {len(groups)} series: {listing}")
    return DicomSeries.open(next(iter(groups.values())))
