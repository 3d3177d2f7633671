"""Organs under the diaphragm: liver, stomach, spleen, kidneys, bowel.

Positions and sizes are fractions of the thoracic cavity's half width (``A``) and
half depth (``B``) at its widest; heights are nominal z or mm from a dome's top.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ivcontrast.synth.anatomy.base import Z_DOME_L, Z_DOME_R, BuilderBase
from ivcontrast.synth.outlines import DomeFill
from ivcontrast.synth.physiology import LABEL

ORGAN_LEVELS = (-330, -250, -180, -120, -80)  # nominal z of the organs' knots


@dataclass(frozen=True)
class DomeOrgan:
    """An organ whose top follows a diaphragm dome (``side`` "r" or "l").

    ``section``: centre x, y and half axes as fractions of A and B, less ``inset`` mm,
    and the angle; ``dome``: its centre and half axes (fractions), the dome's offset
    from the diaphragm's top (mm), and its height and width (DomeFill's shape).
    """

    label: str
    tissue: str
    bottom: float  # nominal z
    side: str
    top: float  # mm from the dome's top
    section: tuple[float, float, float, float, float, float]  # x, y, a, b, inset, angle
    dome: tuple[float, float, float, float, float, float, float]  # x, y, dz, a, b, h, w


# The left lobe of the liver, spleen, stomach wall and lumen, in painting order.
DOME_ORGANS: tuple[DomeOrgan, ...] = (
    DomeOrgan(
        "liver", "liver", -300, "r", -5,
        (0.15, -0.45, 0.4, 0.45, 0.0, 0.0), (0.0, -0.3, -8, 0.45, 0.6, 30.0, 30.0),
    ),
    DomeOrgan(
        "spleen", "spleen", -290, "l", 2,
        (0.62, 0.45, 0.28, 0.38, 0.0, 0.6), (0.45, -0.1, 0, 0.6, 1.0, 100.0, 30.0),
    ),
    DomeOrgan(
        "stomach", "stomach_wall", -300, "l", -3,
        (0.4, -0.15, 0.36, 0.42, 0.0, -0.5), (0.4, -0.1, -5, 0.5, 1.0, 45.0, 30.0),
    ),
    DomeOrgan(
        "stomach_lumen", "fluid", -300, "l", -8,
        (0.4, -0.15, 0.36, 0.42, 5.0, -0.5), (0.4, -0.1, -9, 0.5, 1.0, 45.0, 30.0),
    ),
)  # fmt: skip
# Gas in the stomach's fundus: mm from the left dome, y (fraction of B), and the half
# axes as multiples of the drawn gas size (0: a 0.1 mm tip).
STOMACH_GAS = (
    (-40, -0.45, 0.0, 0.0),
    (-25, -0.42, 1.4, 0.6),
    (-9, -0.3, 1.0, 0.5),
    (-6, -0.3, 0.0, 0.0),
)
HEPATIC_VEIN_ANGLES = (-0.4, 0.3, 1.0)
# Portal vein: x, y (fractions of A, B), nominal z; radii.
PORTAL_VEIN = ((-0.05, 0.1, -290), (-0.2, 0.0, -245), (-0.45, -0.05, -215), (-0.6, 0.1, -195))
PORTAL_RADII = (7.0, 6.5, 4.5, 3.0)
# Kidneys: mm below the kidney's top, half axes.
KIDNEY = ((-110, 0.1, 0.1), (-95, 24, 28), (-55, 30, 32), (-15, 22, 26), (0, 0.1, 0.1))
KIDNEY_TOP = {-1.0: -205, 1.0: -190}  # nominal z: the right kidney lies lower
# Colon flexures: mm below their top, y (fraction of B), half axes.
COLON = ((-100, -0.1, 22, 20), (-20, -0.2, 25, 22), (0, -0.25, 0.1, 0.1))
COLON_TOP = {-1.0: -245, 1.0: -215}  # hepatic (right) and splenic (left) flexures


class AbdomenParts(BuilderBase):
    def abdomen(self) -> None:
        """Organs under the diaphragm: liver, stomach, spleen, kidneys, bowel."""
        self.upper_abdominal_organs()
        self.abdominal_veins()
        for side in (-1.0, 1.0):
            self.kidney(side)
        for side in (-1.0, 1.0):
            self.colon_flexure(side)

    def upper_abdominal_organs(self) -> None:
        """The liver fills the right upper abdomen and reaches across the midline in
        front; spleen and stomach under the left dome, gas in the fundus."""
        p = self.p
        A, B = p.cavity_a, p.cavity_b
        zr, zl = self.z(Z_DOME_R), self.z(Z_DOME_L)
        zs = [self.z(n) for n in ORGAN_LEVELS]
        cavity = [(0.0, 0.0, self.A(z) + 1.0, self.B(z) + 1.0, 0.0) for z in zs]
        liver = DomeFill(
            LABEL["liver"],
            "liver",
            self.z(-330),
            zr + 2,
            zk=np.array(zs),
            params=np.array(cavity),
            dome=(-0.45 * A, -0.1 * B, zr, 0.6 * A, B, 100.0, 30.0),
        )
        self.add(liver)
        for organ in DOME_ORGANS:
            dome_z = zr if organ.side == "r" else zl
            x, y, a, b, inset, ang = organ.section
            dx, dy, dz, da, db, height, width = organ.dome
            self.add(
                DomeFill(
                    LABEL[organ.label],
                    organ.tissue,
                    self.z(organ.bottom),
                    dome_z + organ.top,
                    zk=np.array(zs),
                    params=np.array(
                        [(x * A, y * B, a * A - inset, b * B - inset, ang) for _ in zs]
                    ),
                    dome=(dx * A, dy * B, dome_z + dz, da * A, db * B, height, width),
                )
            )
        gas = self.rng.uniform(8, 30)
        kn = [
            (zl + dz, 0.38 * A, fy * B, gas * fa if fa else 0.1, gas * fb if fb else 0.1)
            for dz, fy, fa, fb in STOMACH_GAS
        ]
        self.ellipse("stomach_lumen", "bowel_gas", kn)

    def abdominal_veins(self) -> None:
        """Hepatic and portal veins inside the liver."""
        A, B = self.p.cavity_a, self.p.cavity_b
        zr = self.z(Z_DOME_R)
        for ang in HEPATIC_VEIN_ANGLES:
            x1, y1 = -0.2 * A + 80 * np.cos(ang + np.pi), -0.1 * B + 60 * np.sin(ang + np.pi)
            self.tube(
                "hepatic_vein",
                "blood_hepatic",
                [(-0.18 * A, 0.1 * B, zr - 10), (x1 * 0.7, y1 * 0.7, zr - 40), (x1, y1, zr - 55)],
                [6.0, 4.0, 2.5],
            )
        pv = [(fx * A, fy * B, self.z(n)) for fx, fy, n in PORTAL_VEIN]
        self.tube("portal_vein", "blood_portal", pv, list(PORTAL_RADII))

    def kidney(self, side: float) -> None:
        """A kidney behind, beside the spine, in its fat: cortex, medulla, pelvis."""
        p, rng = self.p, self.rng
        A, B = p.cavity_a, p.cavity_b
        top = self.z(KIDNEY_TOP[side]) + rng.uniform(-10, 10)
        kx = side * (0.32 * A + rng.uniform(0, 10))
        ky = 0.55 * B
        kn = [(top + dz, kx, ky, a, b) for dz, a, b in KIDNEY]
        halo = [
            (k[0], k[1], k[2], k[3] + 8 * p.visceral_fat + 3, k[4] + 8 * p.visceral_fat + 3)
            for k in kn
        ]
        self.ellipse("fat", "fat", halo)
        self.ellipse("kidney", "kidney_cortex", kn, angle=side * 0.5)
        self.ellipse(
            "kidney",
            "kidney_medulla",
            [(k[0], k[1], k[2], k[3] * 0.65, k[4] * 0.65) for k in kn],
            angle=side * 0.5,
        )
        self.ellipse(
            "kidney",
            "urine",
            [(k[0], k[1] - side * 8, k[2] - 4, k[3] * 0.25, k[4] * 0.3) for k in kn],
            angle=side * 0.5,
        )

    def colon_flexure(self, side: float) -> None:
        """The colon's splenic or hepatic flexure, with gas and stool."""
        A, B = self.p.cavity_a, self.p.cavity_b
        zt = self.z(COLON_TOP[side])
        cx = side * 0.7 * A
        knots = [(zt + dz, cx, fy * B, a, b) for dz, fy, a, b in COLON]
        self.ellipse("bowel", "bowel_content", knots)
        self.ellipse(
            "bowel",
            "bowel_gas",
            [(k[0], k[1], k[2] - 6, k[3] * 0.6, k[4] * 0.35) for k in knots],
        )
