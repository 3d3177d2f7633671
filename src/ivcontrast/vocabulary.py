"""The domain's words, in one place: result labels, tag status, job kinds, devices, and what
the ContrastBolusAgent tag says when it says "no contrast".

This module is the ground floor: it imports nothing from the project, and everything else
imports it. The values are the strings stored in the database and printed by the CLI and the
API, so changing one is a schema change (a migration), not a rename.
"""

from __future__ import annotations

import enum
from typing import Literal, get_args


class Label(enum.StrEnum):
    """A contrast call, as the results table, the API and the CLI spell it."""

    CONTRAST = "contrast"
    NO_CONTRAST = "no_contrast"
    # The network and the physics opinion disagree, or the probability is too close to the
    # threshold: a person decides. Write-back writes no corrected tag for it by default.
    REVIEW = "review"

    @classmethod
    def of(cls, contrast: bool) -> Label:
        return cls.CONTRAST if contrast else cls.NO_CONTRAST


class TagStatus(enum.StrEnum):
    """How the original ContrastBolusAgent (0018,0010) compares with the model's call."""

    MISSING = "missing"  # tag absent or empty
    AGREES = "agrees"
    DISAGREES = "disagrees"


class JobKind(enum.StrEnum):
    """The kinds of job in the durable queue (``jobs.kind``)."""

    CHECK = "check"  # a completed series: eligible for classification?
    CLASSIFY = "classify"  # an eligible series: the network's call
    WRITEBACK = "writeback"  # a result: corrected copies to one destination


# Where inference and training run: auto = CUDA when PyTorch sees a GPU, else the CPU. A
# Literal rather than an enum, so that settings and argparse keep plain strings.
DeviceName = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[DeviceName, ...] = get_args(DeviceName)


# What the tag says when it says "no contrast", compared after strip() and upper(): the rule
# of Ye et al. (2021) ('N', 'n', 'NO', any case, and 'NONE'). Absent or empty = missing.
NEGATIVE_TAG_VALUES = frozenset({"N", "NO", "NONE"})


def tag_says_contrast(value: str | None) -> bool | None:
    """True/False for what a ContrastBolusAgent value claims; None when missing or empty."""
    if value is None or not value.strip():
        return None
    return value.strip().upper() not in NEGATIVE_TAG_VALUES
