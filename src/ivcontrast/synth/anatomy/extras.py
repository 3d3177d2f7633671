"""The confounders a patient carries, added after the rest of the body.

Calcified vessel walls (aortic and carotid rims: bright crescents on the wall, the blood
inside unchanged), the brain above the orbits (lateral and third ventricles, the
superior sagittal sinus) with its physiological calcifications (choroid plexus,
pineal, falx, basal ganglia), and the streaks between arms raised beside the head.

Everything here draws from its own generators (one per structure), never from the
body's: a patient with or without a confounder has the same body, organs and vessels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ivcontrast.synth.anatomy.base import Rng
from ivcontrast.synth.confounders import draw_intracranial, vessel_calcium_grade

if TYPE_CHECKING:
    from ivcontrast.synth.anatomy.builder import Builder


@dataclass(frozen=True)
class Extras:
    """What the caller forced (``None`` = drawn) and the seed of the draws."""

    vessel_calcium: str | None = None
    intracranial_calcium: tuple[str, ...] | None = None
    seed: int = 0

    def rng(self, part: int) -> Rng:
        return np.random.default_rng([self.seed, 0xCA, part])


def add_extras(b: Builder, extras: Extras, plaques: slice) -> None:
    """Resolve and add the patient's confounders; ``plaques`` are the shapes of the
    body's own calcified plaques (removed when the vessels are forced clean)."""
    p = b.p
    rng = extras.rng(0)
    grade = vessel_calcium_grade(rng, p.age, p.calcified)
    intracranial = draw_intracranial(rng, p.age)
    if extras.vessel_calcium is not None:
        grade = extras.vessel_calcium
    if extras.intracranial_calcium is not None:
        intracranial = tuple(extras.intracranial_calcium)
    if grade == "none":
        del b.shapes[plaques]
    elif not p.calcified:
        b.spot_plaques(extras.rng(1))
    p.calcified = grade != "none"
    p.vessel_calcium = grade
    p.intracranial_calcium = intracranial
    if grade != "none":
        b.vessel_rims(grade, extras.rng(2))
    b.ventricles_and_sagittal_sinus()
    b.intracranial_calcium(intracranial, extras.rng(3))
    b.raised_arm_streaks(extras.rng(4))
