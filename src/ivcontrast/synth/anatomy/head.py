"""The head: skull vault and brain, skull base (petrous bones, clivus), the sinuses and
nasal cavity, the orbits, the dural venous sinuses, and above the orbits the
ventricles, the superior sagittal sinus and the physiological calcifications (choroid
plexus, pineal, falx, basal ganglia).

Tables give nominal z (mm above the carina), positions relative to the head's centre
and sizes in mm or as fractions of the head's half width (``ha``) and depth (``hb``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ivcontrast.synth.anatomy.base import Z_ORBIT_FLOOR, Z_ORBIT_TOP, BuilderBase, Rng
from ivcontrast.synth.geometry import Capsule
from ivcontrast.synth.physiology import LABEL

Row = tuple[float, float, float]  # nominal z, half width, half depth (mm)

# The skull vault: z, centre y from the head's centre, half width and depth as
# fractions of the head's (0: the vault's tip, 0.5 mm); the brain is the vault less
# the bone (mm).
SKULL: tuple[tuple[float, float, float, float], ...] = (
    (205, 30, 0.0, 0.0),
    (215, 30, 0.7, 0.5),
    (240, 24, 0.92, 0.68),
    (270, 16, 0.97, 0.78),
    (300, 5, 1.0, 0.92),
    (330, 5, 0.95, 0.9),
)
BRAIN: tuple[tuple[float, float, float, float, float], ...] = (
    (208, 30, 0.0, 0.0, 0.0),
    (216, 30, 0.7, 0.5, 5.0),
    (240, 24, 0.92, 0.68, 5.5),
    (270, 16, 0.97, 0.78, 6.0),
    (300, 5, 1.0, 0.92, 6.0),
    (330, 5, 0.95, 0.9, 6.0),
)
# Petrous bones at x = +-36 mm, 12 mm behind the head's centre, turned 0.75 rad.
PETROUS: tuple[Row, ...] = ((220, 0.5, 0.5), (224, 17.0, 6.0), (234, 19.0, 7.0), (238, 0.5, 0.5))
PETROUS_BAND = (222.0, 236.0)  # z range of the beam-hardening band between them
# Clivus: z, y of its two ends from the head's centre, thickness.
CLIVUS = ((200, 2.0, -10.0, 5.0), (235, -2.0, -18.0, 6.0))
MAXILLARY: tuple[Row, ...] = ((208, 0.5, 0.5), (214, 16, 17), (236, 18, 19), (246, 0.5, 0.5))
# Nasal cavity: z, y as a fraction of hb in front of the centre, half width, depth.
NASAL = ((206, 0.62, 0.5, 0.5), (212, 0.6, 11, 22), (245, 0.62, 10, 20), (255, 0.65, 0.5, 0.5))
TURBINATE: tuple[Row, ...] = ((212, 0.5, 0.5), (222, 3.5, 12), (232, 0.5, 0.5))
# Sphenoid sinus: z, y from the head's centre, half width, depth.
SPHENOID = ((226, -22, 0.5, 0.5), (232, -22, 12, 10), (244, -24, 0.5, 0.5))
ORBIT_WALL: tuple[Row, ...] = (
    (Z_ORBIT_FLOOR - 2, 0.5, 0.5),
    (Z_ORBIT_FLOOR + 4, 19, 24),
    (Z_ORBIT_TOP - 4, 19, 24),
    (Z_ORBIT_TOP + 2, 0.5, 0.5),
)
ORBIT_FAT: tuple[Row, ...] = (
    (Z_ORBIT_FLOOR, 0.5, 0.5),
    (Z_ORBIT_FLOOR + 5, 17.8, 22.8),
    (Z_ORBIT_TOP - 5, 17.8, 22.8),
    (Z_ORBIT_TOP, 0.5, 0.5),
)
Z_GLOBE = (Z_ORBIT_FLOOR + Z_ORBIT_TOP) / 2
GLOBE: tuple[Row, ...] = (
    (Z_GLOBE - 12, 0.5, 0.5),
    (Z_GLOBE - 8, 9, 9),
    (Z_GLOBE, 12, 12),
    (Z_GLOBE + 8, 9, 9),
    (Z_GLOBE + 12, 0.5, 0.5),
)
LENS: tuple[Row, ...] = ((Z_GLOBE - 4, 0.5, 0.5), (Z_GLOBE, 4.5, 2), (Z_GLOBE + 4, 0.5, 0.5))

# Above the orbits. The brain's centre y relative to the head's centre, by z.
BRAIN_CENTRE: tuple[tuple[float, float], ...] = ((240.0, 24.0), (270.0, 16.0), (300.0, 5.0))
Z_THIRD_VENTRICLE = (270.0, 296.0)
Z_VENTRICLE_BODY = (282.0, 326.0)
Z_ATRIUM = (286.0, 314.0)
# Physiological calcifications: nominal z of the choroid plexus glomus (in the
# ventricles' atria), the pineal, the basal ganglia; where a calcified falx begins.
Z_CHOROID = 298.0
Z_PINEAL = 291.0
Z_BASAL_GANGLIA = 292.0
Z_FALX = (296.0, 315.0)


class HeadParts(BuilderBase):
    def head_frame(self) -> tuple[float, float, float]:
        """The head's centre y and its half width and depth."""
        return self.yn - 10, self.p.neck_a + 20, self.p.neck_b + 38

    def rows(self, rows: Sequence[Sequence[float]], x: float, y: float) -> list[tuple[float, ...]]:
        """Ellipse knots from (nominal z, half width, half depth) rows at (x, y)."""
        return [(self.z(n), x, y, a, b) for n, a, b in rows]

    def head(self) -> None:
        """Skull base, face and the lowest brain: sinuses, orbits, petrous bones."""
        self.skull_and_brain()
        self.skull_base()
        self.sinuses()
        self.orbits()
        self.dural_sinuses()

    def skull_and_brain(self) -> None:
        hy, ha, hb = self.head_frame()
        vault = [
            (self.z(n), 0, hy + dy, ha * fa if fa else 0.5, hb * fb if fb else 0.5)
            for n, dy, fa, fb in SKULL
        ]
        self.ellipse("bone_cortical", "cortical", vault)
        brain = [
            (self.z(n), 0, hy + dy, ha * fa - t if fa else 0.5, hb * fb - t if fb else 0.5)
            for n, dy, fa, fb, t in BRAIN
        ]
        self.ellipse("brain", "brain", brain)

    def skull_base(self) -> None:
        """Petrous bones, dense and oblique (beam-hardening bands run between them)."""
        hy = self.head_frame()[0]
        for side in (-1.0, 1.0):
            kn = self.rows(PETROUS, side * 36.0, hy + 12)
            self.ellipse("bone_cortical", "cortical", kn, angle=side * 0.75)
        lo, hi = PETROUS_BAND

        def petrous(z: float) -> tuple[float, float, float, float] | None:
            if not self.z(lo) <= z <= self.z(hi):
                return None
            return (-40.0, hy + 2, 40.0, hy + 2)

        self.dense_pairs.append((petrous, self.rng.uniform(30, 70)))
        clivus = [(self.z(n), 0.0, hy + y0, 0.0, hy + y1, r) for n, y0, y1, r in CLIVUS]
        self.add(Capsule.make(LABEL["bone_cortical"], "cortical", clivus))

    def sinuses(self) -> None:
        """Maxillary sinuses with bony walls, nasal cavity with septum, sphenoid sinus."""
        hy, _, hb = self.head_frame()
        for side in (-1.0, 1.0):
            walls = self.rows(MAXILLARY, side * 24.0, hy - hb * 0.55)
            self.ellipse("bone_cortical", "cortical", walls)
            self.ellipse(
                "airway",
                "air",
                [(k[0], k[1], k[2], max(k[3] - 2.0, 0.3), max(k[4] - 2.0, 0.3)) for k in walls],
            )
        nasal = [(self.z(n), 0, hy - hb * f, a, b) for n, f, a, b in NASAL]
        self.ellipse(
            "mucosa", "mucosa", [(k[0], k[1], k[2], k[3] + 2.5, k[4] + 2.5) for k in nasal]
        )
        self.ellipse("airway", "air", nasal)
        septum = [(self.z(n), 0.0, hy - hb * 0.4, 0.0, hy - hb * 0.8, 1.0) for n in (206, 255)]
        self.add(Capsule.make(LABEL["bone_cortical"], "cortical", septum))
        for side in (-1.0, 1.0):
            self.ellipse("mucosa", "mucosa", self.rows(TURBINATE, side * 7.0, hy - hb * 0.6))
        sphenoid = [(self.z(n), 0, hy + dy, a, b) for n, dy, a, b in SPHENOID]
        self.ellipse("airway", "air", sphenoid)

    def orbits(self) -> None:
        """Orbits: fat cone, globe, lens; lateral orbital walls."""
        hy, _, hb = self.head_frame()
        for side in (-1.0, 1.0):
            ox, oy = side * 31.0, hy - hb * 0.7
            self.ellipse("bone_cortical", "cortical", self.rows(ORBIT_WALL, ox, oy + 10))
            self.ellipse("fat", "fat", self.rows(ORBIT_FAT, ox, oy + 10))
            self.ellipse("globe", "globe", self.rows(GLOBE, ox, oy))
            self.ellipse("lens", "lens", self.rows(LENS, ox, oy - 9))

    def dural_sinuses(self) -> None:
        """Dural venous sinuses (transverse and sigmoid) behind the petrous bones."""
        hy, _, hb = self.head_frame()
        for side in (-1.0, 1.0):
            pts = [
                (side * 30.0, self.yn + self.p.neck_b * 0.35, self.z(232)),
                (side * 42.0, hy + 40, self.z(240)),
                (side * 20.0, hy + hb * 0.8, self.z(248)),
                (0.0, hy + hb * 0.88, self.z(252)),
            ]
            self.tube("dural_sinus", "blood_jugular", pts, [5.0, 4.5, 4.0, 4.0])

    # --- above the orbits (added with the confounders, from their own draws) ----------

    def brain_y(self, n: float) -> float:
        """The brain's centre y at nominal z ``n``."""
        zs, ys = zip(*BRAIN_CENTRE, strict=True)
        return self.head_frame()[0] + float(np.interp(n, zs, ys))

    def ventricle_scale(self) -> float:
        """Ventricles widen with age (atrophy)."""
        return 0.85 + 0.5 * max(self.p.age - 30, 0) / 60.0

    def ventricles_and_sagittal_sinus(self) -> None:
        """Lateral and third ventricles (larger with age) and the superior sagittal sinus."""
        hy, _, hb = self.head_frame()
        s = self.ventricle_scale()
        lo, hi = Z_VENTRICLE_BODY
        body = [
            (lo, 0.3, 0.3),
            (lo + 6, 3.0 * s, 18.0),
            (300.0, 5.0 * s, 30.0),
            (hi - 8, 5.0 * s, 28.0),
            (hi, 0.3, 0.3),
        ]
        lo, hi = Z_ATRIUM
        atrium = [(lo, 0.3, 0.3), (lo + 6, 6.0 * s, 8.0), (hi - 8, 7.0 * s, 9.0), (hi, 0.3, 0.3)]
        for side in (-1.0, 1.0):
            kn = [(self.z(n), side * 9.0 * s, self.brain_y(n), a, c) for n, a, c in body]
            self.ellipse("ventricle", "csf", kn, angle=side * 0.12)
            x = side * 22.0 * s**0.5
            kn = [(self.z(n), x, self.brain_y(n) + 26.0, a, c) for n, a, c in atrium]
            self.ellipse("ventricle", "csf", kn)
        lo, hi = Z_THIRD_VENTRICLE
        third = [(lo, 0.3, 0.3), (lo + 6, 2.0 * s, 9.0), (hi - 6, 2.5 * s, 10.0), (hi, 0.3, 0.3)]
        kn = [(self.z(n), 0.0, self.brain_y(n) - 2.0, a, c) for n, a, c in third]
        self.ellipse("ventricle", "csf", kn)
        back = [(0.0, hy + hb * 0.88, self.z(252))]
        back += [(0.0, self.brain_y(n) + hb * 0.9 - 8.0, self.z(n)) for n in (280.0, 330.0)]
        self.tube("dural_sinus", "blood_jugular", back, [4.0, 4.0, 4.5])
        front = [(0.0, self.brain_y(n) - hb * 0.9 + 8.0, self.z(n)) for n in (295.0, 330.0)]
        self.tube("dural_sinus", "blood_jugular", front, [1.5, 3.0])

    def blob(self, tissue: str, n: float, x: float, y: float, size: tuple[float, float]) -> None:
        """A small calcified ellipsoid centred at nominal z ``n``."""
        a, c = size
        half = max(a, c) / self.h
        kn = [
            (self.z(n - half), x, y, 0.3, 0.3),
            (self.z(n), x, y, a, c),
            (self.z(n + half), x, y, 0.3, 0.3),
        ]
        self.ellipse("calcification", tissue, kn)

    def intracranial_calcium(self, which: tuple[str, ...], rng: Rng) -> None:
        """Physiological calcifications: dense, small, away from the skull."""
        s = self.ventricle_scale()
        if "choroid_plexus" in which:
            sides = (-1.0, 1.0) if rng.random() < 0.85 else (float(rng.choice([-1.0, 1.0])),)
            for side in sides:
                n = Z_CHOROID + rng.uniform(-4, 4)
                x = side * 22.0 * s**0.5 + rng.uniform(-2, 2)
                size = (float(rng.uniform(2.5, 5.0)), float(rng.uniform(2.5, 5.0)))
                self.blob("calcium_brain", n, x, self.brain_y(n) + 27.0, size)
        if "pineal" in which:
            n = Z_PINEAL + rng.uniform(-3, 3)
            r = float(rng.uniform(2.0, 4.5))
            self.blob("calcium_brain", n, 0.0, self.brain_y(n) + 10.0, (r, r * 1.2))
        if "falx" in which:
            self.falx_plate(rng)
        if "basal_ganglia" in which:
            for side in (-1.0, 1.0):
                n = Z_BASAL_GANGLIA + rng.uniform(-3, 3)
                r = float(rng.uniform(1.5, 3.5))
                self.blob("calcium_faint", n, side * 18.0, self.brain_y(n) - 4.0, (r, r))

    def falx_plate(self, rng: Rng) -> None:
        """A calcified stretch of the falx: a thin plate in the midline, in front."""
        hb = self.head_frame()[2]
        n0 = float(rng.uniform(*Z_FALX))
        n1 = n0 + float(rng.uniform(10, 25))
        y0 = self.brain_y(n0) - hb * 0.62 + float(rng.uniform(0, 15))
        y1 = y0 + float(rng.uniform(10, 35))
        r = float(rng.uniform(0.6, 1.2))
        knots = [(n0, 0.2), (n0 + 2, r), (n1 - 2, r), (n1, 0.2)]
        plate = [(self.z(n), 0.0, y0, 0.0, y1, w) for n, w in knots]
        self.add(Capsule.make(LABEL["calcification"], "calcium_brain", plate))
