"""Who and when a series is: UIDs, dates and times, numbers, the patient's name.

The study's values come from the anatomy seed (the phases of one study share them),
the series' own from its spec; UIDs are pure functions of them.
"""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from ivcontrast.synth.physiology import Phase

if TYPE_CHECKING:
    from ivcontrast.synth.spec import SeriesSpec

# Seconds from the study's start to each phase, and the series number it gets.
PHASE_DELAY = {Phase.NONE: 0, Phase.ARTERIAL: 150, Phase.PORTAL_VENOUS: 190, Phase.DELAYED: 330}
SERIES_NUMBER = {Phase.NONE: 2, Phase.ARTERIAL: 3, Phase.PORTAL_VENOUS: 4, Phase.DELAYED: 5}


def uid(*parts: object) -> str:
    """A UID that is a pure function of ``parts`` (fixed seed -> same UIDs)."""
    digest = hashlib.sha256("|".join(str(p) for p in ("ivcontrast-synth", *parts)).encode())
    number = int.from_bytes(digest.digest()[:16], "big")
    return f"2.25.{number}"


def series_identity(
    spec: SeriesSpec, anatomy_seed: int, age: int, rng: np.random.Generator
) -> dict[str, Any]:
    """UIDs, dates and names: the study's from the anatomy seed, the series' own."""
    prng = np.random.default_rng([anatomy_seed, 0xA7])
    phase = spec.phase
    study_day = date(2014, 1, 1) + timedelta(days=int(prng.integers(0, 3650)))
    study_seconds = int(prng.integers(7 * 3600, 19 * 3600))
    series_seconds = study_seconds + PHASE_DELAY[phase] + int(rng.integers(0, 60))
    birth = study_day - timedelta(days=int(age * 365.25 + prng.integers(0, 365)))
    chest = spec.region.value == "chest"
    return dict(
        study_uid=uid("study", anatomy_seed),
        series_uid=uid("series", repr(spec)),
        frame_uid=uid("frame", anatomy_seed),
        study_date=study_day.strftime("%Y%m%d"),
        study_time=_hhmmss(study_seconds),
        series_time=_hhmmss(series_seconds),
        series_number=int(SERIES_NUMBER[phase] + (100 if spec.kind.value == "localizer" else 0)),
        patient_id=f"SYN{anatomy_seed:08d}" if anatomy_seed >= 0 else f"SYNM{-anatomy_seed:08d}",
        patient_name=f"SYNTHETIC^{'CHEST' if chest else 'HEADNECK'}^{anatomy_seed}",
        birth_date=birth.strftime("%Y%m%d"),
        accession=f"A{int(prng.integers(10**7, 10**8))}",
    )


def _hhmmss(seconds: int) -> str:
    seconds %= 86400
    return f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}"
