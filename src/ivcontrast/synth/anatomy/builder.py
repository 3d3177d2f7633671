"""The whole patient: every region's parts in painting order, then the confounders and
the deformation field."""

from __future__ import annotations

import numpy as np

from ivcontrast.synth.anatomy.abdomen import AbdomenParts
from ivcontrast.synth.anatomy.base import Z_BOTTOM, Z_TOP, Anatomy, Rng
from ivcontrast.synth.anatomy.calcium import CalciumParts
from ivcontrast.synth.anatomy.chest import ChestParts
from ivcontrast.synth.anatomy.extras import Extras, add_extras
from ivcontrast.synth.anatomy.head import HeadParts
from ivcontrast.synth.anatomy.mediastinum import MediastinumParts
from ivcontrast.synth.anatomy.neck import NeckParts
from ivcontrast.synth.anatomy.spine import SpineParts
from ivcontrast.synth.anatomy.torso import TorsoParts
from ivcontrast.synth.deformation import Deformation


class Builder(
    TorsoParts,
    ChestParts,
    AbdomenParts,
    MediastinumParts,
    SpineParts,
    NeckParts,
    HeadParts,
    CalciumParts,
):
    """Draws one patient and lays out its shapes, region by region."""

    def __init__(self, rng: Rng, arms: str, prone: bool, extras: Extras | None = None) -> None:
        super().__init__(rng, arms, prone)
        self.extras = extras

    def build(self) -> Anatomy:
        outline = self.outline = self.torso()
        self.arms()
        self.breasts()
        self.chest_wall()
        self.lungs()
        self.abdomen()
        self.mediastinum()
        self.rib_cage()
        self.spine()
        self.neck()
        self.head()
        plaques = len(self.shapes)
        self.calcium_and_metal()
        if self.extras is not None:
            add_extras(self, self.extras, slice(plaques, len(self.shapes)))
        # Drawn last, from its own generator: the shapes above keep their draws.
        deformation = Deformation(
            np.random.default_rng(int(self.rng.integers(2**63))),
            half_width=330.0,
            z_range=(Z_BOTTOM * 1.15 - 20.0, Z_TOP * 1.15 + 20.0),
        )
        return Anatomy(self.p, self.shapes, self.metal, self.dense_pairs, outline, deformation)


def build_anatomy(
    rng: Rng, arms: str = "down", prone: bool = False, extras: Extras | None = None
) -> Anatomy:
    """One random patient; the same generator state always gives the same patient.

    ``arms`` ("up" or "down") and ``prone`` are how the patient lay on the table for
    this series: they move the arms and flatten the side lying on the table.
    ``extras``: the confounders (calcified vessel walls, the brain's ventricles and
    calcifications), forced or drawn from their own seed; ``None`` leaves them out.
    """
    return Builder(rng, arms, prone, extras).build()
