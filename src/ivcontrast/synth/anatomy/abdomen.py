"""Organs under the diaphragm: liver, stomach, spleen, kidneys, bowel."""

from __future__ import annotations

import numpy as np

from ivcontrast.synth.anatomy.base import Z_DOME_L, Z_DOME_R, BuilderBase
from ivcontrast.synth.geometry import DomeFill
from ivcontrast.synth.physiology import LABEL


class AbdomenParts(BuilderBase):
    def abdomen(self) -> None:
        """Organs under the diaphragm: liver, stomach, spleen, kidneys, bowel."""
        p, rng = self.p, self.rng
        A, B = p.cavity_a, p.cavity_b
        zr, zl = self.z(Z_DOME_R), self.z(Z_DOME_L)
        cav = lambda z: (0.0, 0.0, self.A(z) + 1.0, self.B(z) + 1.0, 0.0)  # noqa: E731
        zs = [self.z(n) for n in (-330, -250, -180, -120, -80)]
        liver = DomeFill(
            LABEL["liver"],
            "liver",
            self.z(-330),
            zr + 2,
            zk=np.array(zs),
            params=np.array([cav(z) for z in zs]),
            dome=(-0.45 * A, -0.1 * B, zr, 0.6 * A, B, 100.0, 30.0),
        )
        # The liver fills the right upper abdomen and reaches across the midline in front.
        liver_l = DomeFill(
            LABEL["liver"],
            "liver",
            self.z(-300),
            zr - 5,
            zk=np.array(zs),
            params=np.array([(0.15 * A, -0.45 * B, 0.4 * A, 0.45 * B, 0.0) for _ in zs]),
            dome=(0.0, -0.3 * B, zr - 8, 0.45 * A, 0.6 * B, 30.0, 30.0),
        )
        self.add(liver)
        self.add(liver_l)
        spleen = DomeFill(
            LABEL["spleen"],
            "spleen",
            self.z(-290),
            zl + 2,
            zk=np.array(zs),
            params=np.array([(0.62 * A, 0.45 * B, 0.28 * A, 0.38 * B, 0.6) for _ in zs]),
            dome=(0.45 * A, -0.1 * B, zl, 0.6 * A, B, 100.0, 30.0),
        )
        self.add(spleen)
        stomach = DomeFill(
            LABEL["stomach"],
            "stomach_wall",
            self.z(-300),
            zl - 3,
            zk=np.array(zs),
            params=np.array([(0.4 * A, -0.15 * B, 0.36 * A, 0.42 * B, -0.5) for _ in zs]),
            dome=(0.4 * A, -0.1 * B, zl - 5, 0.5 * A, B, 45.0, 30.0),
        )
        self.add(stomach)
        lumen = DomeFill(
            LABEL["stomach_lumen"],
            "fluid",
            self.z(-300),
            zl - 8,
            zk=np.array(zs),
            params=np.array([(0.4 * A, -0.15 * B, 0.36 * A - 5, 0.42 * B - 5, -0.5) for _ in zs]),
            dome=(0.4 * A, -0.1 * B, zl - 9, 0.5 * A, B, 45.0, 30.0),
        )
        self.add(lumen)
        gas = rng.uniform(8, 30)
        self.ellipse(
            "stomach_lumen",
            "bowel_gas",
            [
                (zl - 40, 0.38 * A, -0.45 * B, 0.1, 0.1),
                (zl - 25, 0.38 * A, -0.42 * B, gas * 1.4, gas * 0.6),
                (zl - 9, 0.38 * A, -0.3 * B, gas, gas * 0.5),
                (zl - 6, 0.38 * A, -0.3 * B, 0.1, 0.1),
            ],
        )
        # Hepatic and portal veins inside the liver.
        for ang in (-0.4, 0.3, 1.0):
            x1, y1 = -0.2 * A + 80 * np.cos(ang + np.pi), -0.1 * B + 60 * np.sin(ang + np.pi)
            self.tube(
                "hepatic_vein",
                "blood_hepatic",
                [(-0.18 * A, 0.1 * B, zr - 10), (x1 * 0.7, y1 * 0.7, zr - 40), (x1, y1, zr - 55)],
                [6.0, 4.0, 2.5],
            )
        pv = [
            (-0.05 * A, 0.1 * B, self.z(-290)),
            (-0.2 * A, 0.0, self.z(-245)),
            (-0.45 * A, -0.05 * B, self.z(-215)),
            (-0.6 * A, 0.1 * B, self.z(-195)),
        ]
        self.tube("portal_vein", "blood_portal", pv, [7.0, 6.5, 4.5, 3.0])
        # Kidneys behind, beside the spine.
        for side in (-1.0, 1.0):
            top = self.z(-205 if side < 0 else -190) + rng.uniform(-10, 10)
            kx = side * (0.32 * A + rng.uniform(0, 10))
            ky = 0.55 * B
            kn = [
                (top - 110, kx, ky, 0.1, 0.1),
                (top - 95, kx, ky, 24, 28),
                (top - 55, kx, ky, 30, 32),
                (top - 15, kx, ky, 22, 26),
                (top, kx, ky, 0.1, 0.1),
            ]
            self.ellipse(
                "fat",
                "fat",
                [
                    (k[0], k[1], k[2], k[3] + 8 * p.visceral_fat + 3, k[4] + 8 * p.visceral_fat + 3)
                    for k in kn
                ],
            )
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
        # Colon (splenic and hepatic flexures) with gas and stool.
        for side in (-1.0, 1.0):
            zt = self.z(-215 if side > 0 else -245)
            cx = side * 0.7 * A
            knots = [
                (zt - 100, cx, -0.1 * B, 22, 20),
                (zt - 20, cx, -0.2 * B, 25, 22),
                (zt, cx, -0.25 * B, 0.1, 0.1),
            ]
            self.ellipse("bowel", "bowel_content", knots)
            self.ellipse(
                "bowel",
                "bowel_gas",
                [(k[0], k[1], k[2] - 6, k[3] * 0.6, k[4] * 0.35) for k in knots],
            )
