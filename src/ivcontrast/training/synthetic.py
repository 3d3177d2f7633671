"""Phantom series for training, generated straight into the slice cache.

Each series is drawn by ``ivcontrast.synth`` from its seed (anatomy, scanner, noise, kernel,
confounders, tags: everything the synth owner randomises), then thinned to ``slices`` slices
spread over the same drawn coverage: the slice thickness (and so the noise) stays as drawn,
only the spacing widens. Serving picks ``num_slices`` slices spread over a series' extent, so a
thinned series gives the model what a full one would, at a fraction of the rendering cost.
Each series is written as DICOM to a temporary folder, read back and preprocessed by the
classifier's own reader (the serving path: rescale, padding, patient position), cached, and
deleted. The cache key is the spec plus the generator's code, so an edited phantom is a miss.

Patients: a share of them (``multiphase_fraction``) get a study of a native and one or two
enhanced series of the same anatomy, the rest one series; regions alternate by patient.

Slabs: a share of the series (``slab_fraction``) are not thinned but cut short: ``slices``
contiguous slices at the drawn thickness, somewhere in the region (synth's own choice of
position), like a limited-coverage acquisition. They show the model series that hold only the
skull, only the lung bases or only the thoracic inlet, where the evidence for contrast is
scarce (a dural sinus, a few vessels) and no other slice of the series helps.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ivcontrast.classifier.errors import ClassifierError
from ivcontrast.classifier.preprocess import PreprocessConfig, preprocess
from ivcontrast.classifier.sources import open_source
from ivcontrast.training.cache import CachedSeries, Outcome, SliceCache, code_digest, run_jobs

log = logging.getLogger(__name__)

_SYNTH = Path(__file__).resolve().parent.parent / "synth"
REGIONS = ("chest", "headneck")
CONTRAST_PHASES = ("arterial", "portal_venous", "delayed")
# Weak and late enhancement (delayed) is the hard case: it gets a fair share.
DEFAULT_PHASE_WEIGHTS: dict[str, float] = {
    "none": 0.5,
    "arterial": 0.15,
    "portal_venous": 0.2,
    "delayed": 0.15,
}


@dataclass(frozen=True)
class SyntheticItem:
    """One planned series; has what the split and the data summary need."""

    index: int
    spec: dict[str, Any]  # SeriesSpec keyword arguments
    slices: int
    patient_id: str
    region: str
    phase: str
    row: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def contrast(self) -> bool:
        return self.phase != "none"

    @property
    def label(self) -> int:
        return int(self.contrast)

    @property
    def path(self) -> Path:
        return Path(f"synthetic/{self.spec['seed']}")

    @property
    def origin(self) -> str:
        return f"synthetic seed {self.spec['seed']}"


def plan_set(
    count: int,
    seed: int,
    slices: int,
    regions: Sequence[str] = REGIONS,
    multiphase_fraction: float = 0.25,
    phase_weights: Mapping[str, float] | None = None,
    overrides: Mapping[str, Any] | None = None,
    slab_fraction: float = 0.0,
) -> list[SyntheticItem]:
    """``count`` series with seeds ``seed``, ``seed + 1``, ...; deterministic."""
    if not 0.0 <= slab_fraction <= 1.0:
        raise ValueError(f"slab fraction {slab_fraction} not in [0, 1]")
    if count < 1:
        raise ValueError(f"count {count} < 1")
    if slices < 2:
        raise ValueError(f"slices {slices} < 2")
    weights = dict(phase_weights or DEFAULT_PHASE_WEIGHTS)
    names = list(weights)
    p = np.asarray([weights[n] for n in names], dtype=np.float64)
    if np.any(p < 0) or p.sum() <= 0 or any(n not in ("none", *CONTRAST_PHASES) for n in names):
        raise ValueError(f"phase weights {weights}: non-negative weights of known phases")
    p /= p.sum()
    enhanced = [n for n in CONTRAST_PHASES if weights.get(n, 0.0) > 0] or ["portal_venous"]
    rng = np.random.default_rng([seed, 0x7A])
    items: list[SyntheticItem] = []
    patient = 0
    while len(items) < count:
        region = regions[patient % len(regions)]
        anatomy_seed = seed + len(items)
        if rng.random() < multiphase_fraction:
            extra = rng.choice(
                enhanced, size=min(len(enhanced), 1 + int(rng.random() < 0.5)), replace=False
            )
            phases = ["none", *sorted(str(e) for e in extra)]
        else:
            phases = [names[int(rng.choice(len(names), p=p))]]
        for phase in phases[: count - len(items)]:
            series_seed = seed + len(items)
            spec = {
                "region": region,
                "phase": phase,
                "seed": series_seed,
                "anatomy_seed": anatomy_seed,
            }
            spec.update(overrides or {})
            if slab_fraction > 0 and rng.random() < slab_fraction:
                spec["slices"] = slices  # contiguous, at the drawn thickness: see the docstring
            items.append(
                SyntheticItem(
                    index=len(items),
                    spec=spec,
                    slices=slices,
                    patient_id=f"SYN{anatomy_seed:08d}",
                    region=region,
                    phase=phase,
                )
            )
        patient += 1
    return items


def sampled_spec(spec: Any, slices: int) -> Any:
    """``spec`` (a ``SeriesSpec``) thinned to ``slices`` slices over the same drawn coverage."""
    from ivcontrast.synth import series_plan

    if spec.slices is not None or spec.spacing is not None:
        return spec  # the caller chose the geometry
    plan = series_plan(spec)
    if plan.slices <= slices:
        return spec
    length = (plan.slices - 1) * plan.spacing
    return dataclasses.replace(spec, slices=slices, spacing=length / (slices - 1))


def item_key(cache: SliceCache, item: SyntheticItem) -> str:
    identity = json.dumps(
        {"synth": code_digest(_SYNTH), "spec": item.spec, "slices": item.slices}, sort_keys=True
    )
    return cache.key(identity)


def _make_one(
    root: str, config_json: str, index: int, spec: dict[str, Any], slices: int, key: str, tmp: str
) -> Outcome:
    from ivcontrast.synth import SeriesSpec, SyntheticSeries

    cache = SliceCache(root, PreprocessConfig.from_json(config_json))
    sidecar = cache.entry_path(key).with_suffix(".json")
    if cache.contains(key) and sidecar.is_file():
        return Outcome(index, key, True, row=json.loads(sidecar.read_text(encoding="utf-8")))
    folder = Path(tempfile.mkdtemp(prefix=f"synth-{spec['seed']}-", dir=tmp))
    try:
        series = SyntheticSeries(sampled_spec(SeriesSpec(**spec), slices))
        series.write(folder)
        source = open_source(folder)
        entry = CachedSeries.from_input(key, preprocess(source, cache.config), source)
    except (ClassifierError, ValueError, OSError) as exc:
        return Outcome(index, None, False, f"synthetic seed {spec['seed']}: {exc}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    cache.store(entry)
    row = {
        k: (v if isinstance(v, str | int | float | bool) or v is None else str(v))
        for k, v in series.plan.manifest_row().items()
    }
    tmp_sidecar = sidecar.with_name(f".{sidecar.name}.tmp")
    tmp_sidecar.write_text(json.dumps(row, sort_keys=True), encoding="utf-8")
    tmp_sidecar.replace(sidecar)
    return Outcome(index, key, False, row=row)


def fill_synthetic(
    cache: SliceCache,
    items: Sequence[SyntheticItem],
    workers: int = 1,
    progress: Callable[[Outcome], None] | None = None,
    tmp_dir: str | None = None,
) -> list[Outcome]:
    """Generate, preprocess and cache every item that the cache lacks; outcomes by index."""
    if cache.root is None:
        raise ValueError("synthetic series need a cache on disk")
    root, config_json = str(cache.root), cache.config.to_json()
    with tempfile.TemporaryDirectory(prefix="ivcontrast-synth-", dir=tmp_dir) as tmp:
        jobs = [
            (root, config_json, i, item.spec, item.slices, item_key(cache, item), tmp)
            for i, item in enumerate(items)
        ]
        return run_jobs(_make_one, jobs, workers, progress)
