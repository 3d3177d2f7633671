"""The vertebral column: bodies, discs, arches and processes, canal and cord.

Vertebrae are listed in ``base.VERTEBRAE`` (name, nominal z, height); their sizes by
segment (cervical, thoracic, lumbar) are the tables below.
"""

from __future__ import annotations

from dataclasses import dataclass

from ivcontrast.synth.anatomy.base import VERTEBRAE, BuilderBase
from ivcontrast.synth.geometry import Capsule
from ivcontrast.synth.physiology import LABEL

# Vertebral body half width and half depth (mm); thoracic ones grow down the column:
# 14 + 0.5 i and 12 + 0.35 i for the i-th vertebra from C2.
BODY = {"C": (9.5, 8.0), "L": (22.0, 17.0)}
THORACIC_BODY = ((14.0, 0.5), (12.0, 0.35))
CANAL_RADIUS = {"C": 7.5, "T": 7.0, "L": 9.0}
CANAL_WIDTH = {"C": 1.3, "T": 1.1, "L": 1.1}  # half width / half depth
SPINOUS_LENGTH = {"C": 14.0, "T": 26.0, "L": 22.0}
# Transverse processes: length, how far back the tip lies from the arch, radius.
TRANSVERSE = {"C": (12.0, 2, 3.2), "T": (20.0, 14, 4.6), "L": (20.0, 14, 4.6)}
Z_CORD_END = -230.0  # the conus: below it the canal holds only CSF


@dataclass(frozen=True)
class Vertebra:
    """One vertebra laid out at the patient's scale."""

    index: int
    segment: str  # "C", "T" or "L"
    z0: float
    height: float
    a: float
    b: float
    x: float
    y: float
    top: float
    bot: float


class SpineParts(BuilderBase):
    def vertebra(self, i: int) -> Vertebra:
        name, zn, hn = VERTEBRAE[i]
        z0 = self.z(zn)
        hgt = hn * self.h
        seg = name[0]
        if seg in BODY:
            a, b = BODY[seg]
        else:
            (a0, da), (b0, db) = THORACIC_BODY
            a, b = a0 + i * da, b0 + i * db
        top, bot = z0 + hgt / 2 - 1.5, z0 - hgt / 2 + 1.5
        if name == "C2":
            top += 12.0  # the dens
        x, y = self.spine_x(z0), self.spine_y(z0)
        return Vertebra(i, seg, z0, hgt, a, b, x, y, top, bot)

    def spine(self) -> None:
        canal_r = []
        for i in range(len(VERTEBRAE)):
            v = self.vertebra(i)
            self.vertebral_body(v)
            canal_r.append(self.posterior_arch(v))
        canal = sorted(canal_r)
        self.ellipse("spinal_canal", "csf", canal)
        self.ellipse(
            "spinal_cord",
            "cord",
            [
                (k[0], k[1], k[2], k[3] * 0.5, k[4] * 0.55)
                for k in canal
                if k[0] > self.z(Z_CORD_END)
            ],
        )

    def vertebral_body(self, v: Vertebra) -> None:
        """Cortical shell around trabecular bone, and the disc below."""
        x, y, a, b = v.x, v.y, v.a, v.b
        kn = [
            (v.bot - 0.8, x, y, 0.5, 0.5),
            (v.bot, x, y, a, b),
            (v.top, x, y, a, b),
            (v.top + 0.8, x, y, 0.5, 0.5),
        ]
        self.ellipse("bone_cortical", "cortical", kn)
        self.ellipse(
            "bone_trabecular",
            "trabecular",
            [(k[0], k[1], k[2], max(k[3] - 1.5, 0.3), max(k[4] - 1.5, 0.3)) for k in kn],
        )
        if v.index + 1 < len(VERTEBRAE):
            _, zn, hn = VERTEBRAE[v.index + 1]
            zb = self.z(zn) + hn * self.h / 2 - 1.5
            if v.bot - zb > 1.0:
                yd = self.spine_y((v.bot + zb) / 2)
                self.ellipse("disc", "disc", [(zb, x, yd, a, b), (v.bot, x, y, a, b)])

    def posterior_arch(self, v: Vertebra) -> tuple[float, float, float, float, float]:
        """Pedicles and laminae around the canal, spinous and transverse processes;
        returns the canal's knot at this vertebra."""
        x, y, hgt, bot, top = v.x, v.y, v.height, v.bot, v.top
        cr = CANAL_RADIUS[v.segment]
        canal = (v.z0, x, y + v.b + cr + 2.0, cr * CANAL_WIDTH[v.segment], cr)
        cy = y + v.b + cr + 2.0
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
        back = float(self.outline.border(v.z0, layer=1)[1].max())
        tip = min(cy + cr + SPINOUS_LENGTH[v.segment], back - 6.0)
        spinous = [
            (bot - hgt * 0.6, x, cy + cr, x, tip, 3.0),
            (top - hgt * 0.5, x, cy + cr, x, tip - 6, 3.0),
        ]
        self.add(Capsule.make(LABEL["bone_cortical"], "cortical", spinous))
        for side in (-1.0, 1.0):
            self.transverse_process(v, cy, side)
        return canal

    def transverse_process(self, v: Vertebra, cy: float, side: float) -> None:
        """Thoracic ones point back and out, to the ribs' tubercles; cervical ones hold
        the vertebral artery in their foramen."""
        x, a, hgt = v.x, v.a, v.height
        tp, back, tr = TRANSVERSE[v.segment]
        ty0, ty1 = cy - 2, cy + back
        x0, x1 = x + side * a * 0.5, x + side * (a + tp)
        kn = [
            (v.bot + hgt * 0.25, x0, ty0, x1, ty1, tr),
            (v.top - hgt * 0.25, x0, ty0, x1, ty1, tr),
        ]
        self.add(Capsule.make(LABEL["bone_cortical"], "cortical", kn))
        if v.segment == "C":
            xa = x + side * (a + 8)
            foramen = [
                (v.bot + hgt * 0.3, xa, cy - 2, 2.2, 2.2),
                (v.top - hgt * 0.2, xa, cy - 2, 2.2, 2.2),
            ]
            self.ellipse("vertebral_artery", "blood_art", foramen)
