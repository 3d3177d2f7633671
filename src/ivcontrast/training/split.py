"""Split labelled series into training and validation by patient: no patient on both sides.

Series of one patient (the phases of one study, repeat scans) look alike apart from the
contrast; a model validated on a patient it trained on is validated on its own memory. Patients
are grouped into strata by region and by the classes of their series, and each stratum gives
its share to validation, so both sides see every region and class where the data allow.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class HasPatient(Protocol):
    @property
    def patient_id(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def contrast(self) -> bool: ...


@dataclass(frozen=True)
class Split:
    train: tuple[int, ...]  # indices into the items
    val: tuple[int, ...]


def split_by_patient(items: Sequence[HasPatient], val_fraction: float, seed: int) -> Split:
    """Indices of training and validation series; validation gets ~``val_fraction`` of patients.

    Deterministic for a given seed and set of patients (whatever the order of ``items``).
    Every stratum with at least two patients puts at least one in validation.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"validation fraction {val_fraction} not in (0, 1)")
    series_of: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        series_of[item.patient_id].append(i)
    strata: dict[tuple[str, str], list[str]] = defaultdict(list)
    for patient, members in series_of.items():
        regions = "+".join(sorted({items[i].region for i in members}))
        classes = "+".join(sorted({str(int(items[i].contrast)) for i in members}))
        strata[(regions, classes)].append(patient)
    rng = np.random.default_rng([seed, 0x5B])
    val_patients: set[str] = set()
    for key in sorted(strata):
        patients = sorted(strata[key])
        rng.shuffle(patients)
        take = round(val_fraction * len(patients))
        if len(patients) >= 2:
            take = min(max(take, 1), len(patients) - 1)
        val_patients.update(patients[:take])
    train = tuple(i for i, item in enumerate(items) if item.patient_id not in val_patients)
    val = tuple(i for i, item in enumerate(items) if item.patient_id in val_patients)
    return Split(train=train, val=val)
