"""The vertebral column: bodies, discs, arches and processes, canal and cord."""

from __future__ import annotations

from ivcontrast.synth.anatomy.base import VERTEBRAE, BuilderBase
from ivcontrast.synth.geometry import Capsule
from ivcontrast.synth.physiology import LABEL


class SpineParts(BuilderBase):
    def spine(self) -> None:
        canal_r = []
        for i, (name, zn, hn) in enumerate(VERTEBRAE):
            z0 = self.z(zn)
            hgt = hn * self.h
            cervical = name.startswith("C")
            lumbar = name.startswith("L")
            a = 9.5 if cervical else (22.0 if lumbar else 14.0 + i * 0.5)
            b = 8.0 if cervical else (17.0 if lumbar else 12.0 + i * 0.35)
            x, y = self.spine_x(z0), self.spine_y(z0)
            top, bot = z0 + hgt / 2 - 1.5, z0 - hgt / 2 + 1.5
            if name == "C2":
                top += 12.0  # the dens
            kn = [
                (bot - 0.8, x, y, 0.5, 0.5),
                (bot, x, y, a, b),
                (top, x, y, a, b),
                (top + 0.8, x, y, 0.5, 0.5),
            ]
            self.ellipse("bone_cortical", "cortical", kn)
            self.ellipse(
                "bone_trabecular",
                "trabecular",
                [(k[0], k[1], k[2], max(k[3] - 1.5, 0.3), max(k[4] - 1.5, 0.3)) for k in kn],
            )
            # Disc below.
            if i + 1 < len(VERTEBRAE):
                zb = self.z(VERTEBRAE[i + 1][1]) + VERTEBRAE[i + 1][2] * self.h / 2 - 1.5
                if bot - zb > 1.0:
                    yd = self.spine_y((bot + zb) / 2)
                    self.ellipse("disc", "disc", [(zb, x, yd, a, b), (bot, x, y, a, b)])
            # Posterior arch (pedicles, laminae) around the canal, spinous and transverse processes.
            cr = 7.5 if cervical else (9.0 if lumbar else 7.0)
            canal_r.append((z0, x, y + b + cr + 2.0, cr * (1.3 if cervical else 1.1), cr))
            cy = y + b + cr + 2.0
            # The laminae and spinous process slope down over the vertebra below.
            arch = [
                (bot - hgt * 0.35, x, cy, cr * 1.3 + 5.5, cr + 5.5),
                (top - hgt * 0.3, x, cy, cr * 1.3 + 5.5, cr + 5.5),
            ]
            self.ellipse("bone_cortical", "cortical", arch)
            self.ellipse(
                "bone_trabecular",
                "trabecular",
                [(k[0], k[1], k[2], k[3] - 1.8, k[4] - 1.8) for k in arch],
            )
            sp = 14.0 if cervical else (22.0 if lumbar else 26.0)
            back = float(self.outline.border(z0, layer=1)[1].max())
            tip = min(cy + cr + sp, back - 6.0)
            self.add(
                Capsule.make(
                    LABEL["bone_cortical"],
                    "cortical",
                    [
                        (bot - hgt * 0.6, x, cy + cr, x, tip, 3.0),
                        (top - hgt * 0.5, x, cy + cr, x, tip - 6, 3.0),
                    ],
                )
            )
            for side in (-1.0, 1.0):
                # thoracic transverse processes point back and out, to the ribs' tubercles
                tp = 12.0 if cervical else 20.0
                ty0 = cy - 2
                ty1 = cy + (2 if cervical else 14)
                tr = 3.2 if cervical else 4.6
                self.add(
                    Capsule.make(
                        LABEL["bone_cortical"],
                        "cortical",
                        [
                            (
                                bot + hgt * 0.25,
                                x + side * a * 0.5,
                                ty0,
                                x + side * (a + tp),
                                ty1,
                                tr,
                            ),
                            (
                                top - hgt * 0.25,
                                x + side * a * 0.5,
                                ty0,
                                x + side * (a + tp),
                                ty1,
                                tr,
                            ),
                        ],
                    )
                )
                if cervical:
                    # Transverse foramen for the vertebral artery.
                    self.ellipse(
                        "vertebral_artery",
                        "blood_art",
                        [
                            (bot + hgt * 0.3, x + side * (a + 8), cy - 2, 2.2, 2.2),
                            (top - hgt * 0.2, x + side * (a + 8), cy - 2, 2.2, 2.2),
                        ],
                    )
        canal = sorted(canal_r)
        self.ellipse("spinal_canal", "csf", canal)
        self.ellipse(
            "spinal_cord",
            "cord",
            [(k[0], k[1], k[2], k[3] * 0.5, k[4] * 0.55) for k in canal if k[0] > self.z(-230)],
        )
