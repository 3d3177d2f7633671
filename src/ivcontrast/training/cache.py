"""The slice cache: each series' model input, preprocessed once and kept on disk.

An entry is ``<root>/<key[:2]>/<key>.npz``. The key is the sha256 of the cache format, the
``PreprocessConfig`` (with its algorithm version), the code that reads and preprocesses series,
and the source's identity: for files, every file's path, size and modification time, so an
edited, added or removed file is a miss; for a generated series, its spec and the generator's
code. Entries are written to a temporary file
and renamed, so parallel builders and interrupted runs never leave a torn entry.

An entry keeps the cropped, resized HU of each slice (``ModelInput.hu``), not the windowed
channels: one channel instead of three, and training can augment HU (offsets, noise) before
``apply_windows`` makes the model input. HU are stored as int16 eighths of a HU (-4096 to
4095.875 HU, rounding within 1/16 HU: nothing next to the scanner's own tolerance). Entries
also keep where each slice came from and the series' ContrastBolusAgent, which evaluation
compares with the predictions.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ivcontrast.classifier.dicom_series import DicomSeries
from ivcontrast.classifier.errors import ClassifierError
from ivcontrast.classifier.preprocess import (
    ModelInput,
    PreprocessConfig,
    apply_windows,
    preprocess,
)
from ivcontrast.classifier.sources import open_source
from ivcontrast.classifier.volume import SliceSource

log = logging.getLogger(__name__)

CACHE_FORMAT = 2
HU_STEPS = 8.0  # stored value = round(HU x HU_STEPS)
_CLASSIFIER = Path(__file__).resolve().parent.parent / "classifier"
# The classifier code whose edits can change a model input (beyond PREPROCESS_ALGORITHM).
_READING_CODE = ("preprocess.py", "volume.py", "dicom_series.py", "sources.py")


@functools.cache
def code_digest(folder: Path, names: tuple[str, ...] | None = None) -> str:
    """sha256 over the named (default: all, subpackages included) ``.py`` files of a
    package folder."""
    files = sorted(folder.rglob("*.py")) if names is None else [folder / n for n in names]
    digest = hashlib.sha256()
    for file in files:
        name = file.relative_to(folder).as_posix()
        digest.update(name.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class CachedSeries:
    """One series' model input and its provenance, as the cache holds it."""

    key: str
    hu: np.ndarray  # (m, size, size) int16 = round(HU x HU_STEPS)
    slice_indices: np.ndarray
    z_mm: np.ndarray
    body_area_mm2: np.ndarray
    pixel_mm: np.ndarray
    candidates: int
    source_slices: int
    source: str
    read_seconds: float
    prepare_seconds: float
    has_header: bool  # a DICOM series: its ContrastBolusAgent is known (possibly absent)
    contrast_bolus_agent: str | None

    @property
    def n_slices(self) -> int:
        return int(self.hu.shape[0])

    def hu_float(self) -> np.ndarray:
        return dequantise(self.hu)

    def model_input(self, windows: Sequence[tuple[float, float]]) -> ModelInput:
        """The classifier's ``ModelInput`` for this series (for ``Classifier.infer``)."""
        hu = self.hu_float()
        return ModelInput(
            x=apply_windows(hu, windows),
            hu=hu,
            source=self.source,
            slice_indices=self.slice_indices,
            z_mm=self.z_mm,
            body_area_mm2=self.body_area_mm2,
            pixel_mm=self.pixel_mm,
            candidates=self.candidates,
            source_slices=self.source_slices,
            read_seconds=self.read_seconds,
            prepare_seconds=self.prepare_seconds,
        )

    @classmethod
    def from_input(
        cls, key: str, model_input: ModelInput, source: SliceSource | None
    ) -> CachedSeries:
        has_header = isinstance(source, DicomSeries)
        agent = source.attributes.get("ContrastBolusAgent") if has_header else None  # type: ignore[union-attr]
        return cls(
            key=key,
            hu=quantise(model_input.hu),
            slice_indices=np.asarray(model_input.slice_indices, dtype=np.int64),
            z_mm=np.asarray(model_input.z_mm, dtype=np.float64),
            body_area_mm2=np.asarray(model_input.body_area_mm2, dtype=np.float64),
            pixel_mm=np.asarray(model_input.pixel_mm, dtype=np.float64),
            candidates=int(model_input.candidates),
            source_slices=int(model_input.source_slices),
            source=model_input.source,
            read_seconds=float(model_input.read_seconds),
            prepare_seconds=float(model_input.prepare_seconds),
            has_header=has_header,
            contrast_bolus_agent=agent,
        )


def quantise(hu: np.ndarray) -> np.ndarray:
    """HU to int16 eighths of a HU (clipped to what int16 holds)."""
    limit = np.iinfo(np.int16)
    return np.clip(np.rint(hu * HU_STEPS), limit.min, limit.max).astype(np.int16)


def dequantise(q: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) * np.float32(1.0 / HU_STEPS)


def file_identity(path: str | os.PathLike[str]) -> str:
    """Path, size and mtime of a file, or of every (non-hidden) file under a folder."""
    root = Path(path).resolve()
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    else:
        raise FileNotFoundError(f"{path}: no such file or folder")
    parts = [str(root)]
    for file in files:
        st = file.stat()
        parts.append(
            f"{file.relative_to(root) if file != root else ''}|{st.st_size}|{st.st_mtime_ns}"
        )
    return "\n".join(parts)


class SliceCache:
    """Preprocessed series on disk for one ``PreprocessConfig``; ``root=None`` keeps nothing."""

    def __init__(self, root: str | os.PathLike[str] | None, config: PreprocessConfig) -> None:
        self.root = None if root is None else Path(root)
        self.config = config
        self._config_json = config.to_json()

    def key(self, identity: str) -> str:
        code = code_digest(_CLASSIFIER, _READING_CODE)
        text = f"ivcontrast-slice-cache {CACHE_FORMAT}\n{self._config_json}\n{code}\n{identity}"
        return hashlib.sha256(text.encode()).hexdigest()

    def entry_path(self, key: str) -> Path:
        if self.root is None:
            raise ValueError("this cache keeps nothing on disk")
        return self.root / key[:2] / f"{key}.npz"

    def contains(self, key: str) -> bool:
        return self.root is not None and self.entry_path(key).is_file()

    def load(self, key: str) -> CachedSeries | None:
        """The entry, or None on a miss (a corrupt entry is a miss, and is removed)."""
        if self.root is None:
            return None
        path = self.entry_path(key)
        try:
            with np.load(path, allow_pickle=False) as data:
                agent = str(data["contrast_bolus_agent"])
                return CachedSeries(
                    key=key,
                    hu=data["hu"],
                    slice_indices=data["slice_indices"],
                    z_mm=data["z_mm"],
                    body_area_mm2=data["body_area_mm2"],
                    pixel_mm=data["pixel_mm"],
                    candidates=int(data["candidates"]),
                    source_slices=int(data["source_slices"]),
                    source=str(data["source"]),
                    read_seconds=float(data["read_seconds"]),
                    prepare_seconds=float(data["prepare_seconds"]),
                    has_header=bool(data["has_header"]),
                    contrast_bolus_agent=agent if bool(data["agent_present"]) else None,
                )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError) as exc:
            log.warning("%s: unreadable cache entry, rebuilding it (%s)", path, exc)
            path.unlink(missing_ok=True)
            return None

    def store(self, entry: CachedSeries) -> None:
        if self.root is None:
            return
        path = self.entry_path(entry.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as fh:
            np.savez(
                fh,
                hu=entry.hu,
                slice_indices=entry.slice_indices,
                z_mm=entry.z_mm,
                body_area_mm2=entry.body_area_mm2,
                pixel_mm=entry.pixel_mm,
                candidates=np.int64(entry.candidates),
                source_slices=np.int64(entry.source_slices),
                source=np.str_(entry.source),
                read_seconds=np.float64(entry.read_seconds),
                prepare_seconds=np.float64(entry.prepare_seconds),
                has_header=np.bool_(entry.has_header),
                agent_present=np.bool_(entry.contrast_bolus_agent is not None),
                contrast_bolus_agent=np.str_(entry.contrast_bolus_agent or ""),
            )
        os.replace(tmp, path)

    def get(self, path: str | os.PathLike[str]) -> tuple[CachedSeries, bool]:
        """The series at ``path`` (DICOM folder or file, NIfTI, NRRD) and whether it was a hit.

        Raises ``ClassifierError`` (``VolumeError``) when the series cannot be read or used.
        """
        key = self.key(file_identity(path))
        entry = self.load(key)
        if entry is not None:
            return entry, True
        t0 = time.perf_counter()
        source = open_source(path)
        opened = time.perf_counter() - t0
        model_input = preprocess(source, self.config)
        entry = CachedSeries.from_input(key, model_input, source)
        entry = _with_read_time(entry, opened)
        self.store(entry)
        return entry, False


def _with_read_time(entry: CachedSeries, seconds: float) -> CachedSeries:
    return CachedSeries(**{**entry.__dict__, "read_seconds": entry.read_seconds + seconds})


@dataclass(frozen=True)
class Outcome:
    """What filling the cache did with one series."""

    index: int
    key: str | None  # None when the series failed
    hit: bool
    error: str | None = None
    row: dict[str, Any] | None = None  # what the source says about the series (synthetic)


def _fill_one(root: str | None, config_json: str, index: int, path: str) -> Outcome:
    cache = SliceCache(root, PreprocessConfig.from_json(config_json))
    try:
        entry, hit = cache.get(path)
    except (ClassifierError, OSError) as exc:
        return Outcome(index, None, False, str(exc))
    return Outcome(index, entry.key, hit)


def fill(
    cache: SliceCache,
    paths: Sequence[str | os.PathLike[str]],
    workers: int = 1,
    progress: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Make sure every series in ``paths`` has an entry; ``workers`` processes build misses.

    Outcomes come back in the order of ``paths``. A series that cannot be read gets an
    outcome with its error instead of stopping the others.
    """
    if cache.root is None:
        raise ValueError("fill needs a cache on disk")
    root, config_json = str(cache.root), cache.config.to_json()
    jobs = [(root, config_json, i, str(p)) for i, p in enumerate(paths)]
    return run_jobs(_fill_one, jobs, workers, progress)


def run_jobs(
    function: Callable[..., Outcome],
    jobs: Sequence[tuple[object, ...]],
    workers: int,
    progress: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """``function(*job)`` for every job, in ``workers`` processes; outcomes sorted by index."""
    outcomes: list[Outcome] = []
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            outcomes.append(function(*job))
            if progress:
                progress(outcomes[-1])
        return outcomes
    # spawn: the parent may hold torch's or ONNX Runtime's threads, which fork does not copy.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(function, *job) for job in jobs]
        for future in as_completed(futures):
            outcomes.append(future.result())
            if progress:
                progress(outcomes[-1])
    return sorted(outcomes, key=lambda o: o.index)
