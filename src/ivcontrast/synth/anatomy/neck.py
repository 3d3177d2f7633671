"""The neck: muscles, thyroid, larynx, vessels, lymph nodes, glands, mandible, teeth.

Tables give nominal z (mm above the carina) and positions relative to the neck's
centre (``yn``), the spine or the trachea; sizes in mm or as fractions of the neck's
half width (``na``) and half depth (``nb``).
"""

from __future__ import annotations

import numpy as np

from ivcontrast.synth.anatomy.base import (
    Z_MANDIBLE_LOW,
    Z_OCCLUSAL,
    Z_PALATE,
    Z_SKULL_BASE,
    BuilderBase,
    Metal,
)
from ivcontrast.synth.geometry import Capsule
from ivcontrast.synth.physiology import LABEL

DEEP_MUSCLE_LEVELS = (70.0, 100.0, 130.0, 160.0, 190.0)
# Deep neck muscles: x and y from the vertebral body's centre, half width, and the half
# depth they reach where they have faded in above the chest.
DEEP_MUSCLES = (
    (13, 38, 12.0, 15.0),  # semispinalis
    (30, 44, 13.0, 12.0),  # splenius
    (36, 18, 9.0, 11.0),  # levator scapulae
    (24, -2, 7.0, 9.0),  # scalenes
    (7, -13, 5.0, 4.0),  # longus colli
)
STRAP_LEVELS = (70.0, 100.0, 130.0, 150.0)
# Thyroid lobes: nominal z and the size along the lobe (fraction of its largest).
THYROID_LOBE = ((75, 0.1), (82, 0.8), (100, 1.0), (118, 0.7), (126, 0.1))
# The air column from the trachea through larynx and pharynx: nominal z, half axes.
AIRWAY = (
    (100, 8, 7),
    (115, 7, 6),
    (125, 6, 8),
    (135, 9, 7),
    (145, 12, 7),
    (165, 14, 8),
    (185, 13, 7),
    (200, 11, 6),
    (215, 0.5, 0.5),
)
# Tongue: nominal z, y (fraction of nb in front of the centre), half axes.
TONGUE = ((150, 0.4, 10, 10), (165, 0.55, 28, 22), (190, 0.65, 26, 24), (200, 0.7, 6, 6))
# Submandibular glands: nominal z, y (fraction of nb in front), half axes; parotids:
# nominal z, x (fraction of na), y (mm behind the neck's centre), half axes.
SUBMANDIBULAR = (
    (140, 0.35, 0.5, 0.5),
    (152, 0.4, 14, 10),
    (165, 0.45, 12, 9),
    (175, 0.45, 0.5, 0.5),
)
PAROTID = (
    (175, 0.9, 5, 0.5, 0.5),
    (195, 0.95, 2, 13, 18),
    (225, 0.95, 0, 12, 15),
    (235, 0.95, 0, 0.5, 0.5),
)


class NeckParts(BuilderBase):
    def neck(self) -> None:
        self.deep_neck_muscles()
        self.anterior_neck_muscles()
        self.thyroid()
        self.larynx()
        self.neck_vessels()
        self.neck_lymph_nodes()
        self.mouth_floor()
        self.mandible()

    def deep_neck_muscles(self) -> None:
        """Deep neck muscles, each outlined by a thin fat plane: splenius/semispinalis
        behind, levator scapulae, scalenes beside the spine, longus colli in front of
        it; fat of the posterior triangle between the sternocleidomastoid and trapezius."""
        p = self.p
        na, nb, yn = p.neck_a, p.neck_b, self.yn
        zs = [self.z(n) for n in DEEP_MUSCLE_LEVELS]
        for side in (-1.0, 1.0):
            groups = []
            for z in zs:
                ys, xs = self.spine_y(z), self.spine_x(z)
                top = float(np.clip((z / self.h - 60) / 40.0, 0.0, 1.0))  # fade in above the chest
                groups.append(
                    (
                        z,
                        [
                            (xs + side * dx, ys + dy, a, b * top + 0.5)
                            for dx, dy, a, b in DEEP_MUSCLES
                        ],
                    )
                )
            for k in range(len(DEEP_MUSCLES)):
                kn: list[tuple[float, ...]] = [
                    (z, g[k][0], g[k][1], g[k][2] * (g[k][3] > 1), g[k][3]) for z, g in groups
                ]
                self.muscle_with_plane(kn, gap=2.0, wobble=1.2)
            fat_pad = [
                (z, side * na * 0.62, yn + nb * 0.05, 10 + p.fat_mm * 0.4, 9 + p.fat_mm * 0.3)
                for z in zs[1:4]
            ]
            fat_pad = [
                (self.z(85), *fat_pad[0][1:3], 0.5, 0.5),
                *fat_pad,
                (self.z(175), *fat_pad[-1][1:3], 0.5, 0.5),
            ]
            self.ellipse("fat", "fat", fat_pad)

    def anterior_neck_muscles(self) -> None:
        """Strap muscles in front of the thyroid and larynx; sternocleidomastoid muscles,
        anterolateral, from the sternum to the mastoid."""
        na, nb, yn = self.p.neck_a, self.p.neck_b, self.yn
        for side in (-1.0, 1.0):
            kn = []
            for n in STRAP_LEVELS:
                z = self.z(n)
                tx, ty0 = self.trachea_pos(z)
                kn.append((z, tx + side * 11, ty0 - 17, 9.0, 2.8))
            self.ellipse("muscle", "muscle", kn)
        for side in (-1.0, 1.0):
            pts = [
                (side * 16.0, -self.B(self.z(55)) - 5, self.z(55)),
                (side * na * 0.62, yn - nb * 0.45, self.z(100)),
                (side * na * 0.8, yn - nb * 0.2, self.z(150)),
                (side * na * 0.85, yn + nb * 0.1, self.z(210)),
            ]
            self.tube("muscle", "fat", pts, [8.0, 9.0, 10.0, 9.0])
            self.tube("muscle", "muscle", pts, [6.0, 7.5, 8.0, 7.0])

    def thyroid(self) -> None:
        """Thyroid lobes beside the trachea, isthmus in front; dense even without contrast."""
        size = self.rng.uniform(0.8, 1.3)
        for side in (-1.0, 1.0):
            kn = []
            for n, s in THYROID_LOBE:
                z = self.z(n)
                y = self.trachea_pos(z)[1]
                kn.append((z, side * 16.0 * size, y + 2.0, 9.0 * s * size, 13.0 * s * size))
            self.ellipse("thyroid", "thyroid", kn, angle=side * 0.3)
        y = self.trachea_pos(self.z(95))[1] - 11
        isthmus = [
            (self.z(n), 0.0, y, a, b)
            for n, a, b in ((90, 0.5, 0.5), (95, 10.0, 3.5), (102, 0.5, 0.5))
        ]
        self.ellipse("thyroid", "thyroid", isthmus)

    def larynx(self) -> None:
        """Larynx: cartilage (partly calcified with age), mucosa and the air column."""
        p, rng = self.p, self.rng
        calc = "cartilage_calcified" if p.age > 45 and rng.random() < 0.7 else "cartilage"
        ty = lambda z: self.trachea_pos(z)[1]  # noqa: E731
        for side in (-1.0, 1.0):
            kn = [
                (self.z(118), 0.0, ty(self.z(120)) - 12, side * 12.0, ty(self.z(120)) + 2, 1.8),
                (self.z(140), 0.0, ty(self.z(140)) - 14, side * 14.0, ty(self.z(140)) + 4, 1.8),
            ]
            self.add(Capsule.make(LABEL["cartilage"], calc, kn))
        self.ellipse(
            "cartilage",
            calc,
            [
                (self.z(108), *self.trachea_pos(self.z(108)), 11.5, 11.5),
                (self.z(117), *self.trachea_pos(self.z(117)), 11.5, 11.5),
            ],
        )
        air = []
        for n, a, b in AIRWAY:
            z = self.z(n)
            x, y = self.trachea_pos(z)
            if n > 140:
                y = self.spine_y(z) - 20
            air.append((z, x, y, a, b))
        self.ellipse(
            "mucosa",
            "mucosa",
            [(k[0], k[1], k[2], k[3] + 3.5, k[4] + 3.5) for k in air if k[0] > self.z(100)],
        )
        self.ellipse("airway", "air", air)

    def neck_vessels(self) -> None:
        """Carotid arteries (bifurcating) and jugular veins."""
        p, rng = self.p, self.rng
        na, nb, yn = p.neck_a, p.neck_b, self.yn
        lcca0, bct = self.arch_branches["lcca"], self.arch_branches["bct"]
        bif = self.z(rng.uniform(140, 160))
        self.carotid_bulbs = []
        for side, start in ((-1.0, bct[-1]), (1.0, lcca0[-1])):
            cx = side * (na * 0.45 + rng.uniform(-3, 3))
            cy = yn - nb * 0.32
            cca = [start, (cx, cy, self.z(90)), (cx, cy, bif)]
            r = rng.uniform(3.2, 4.2)
            self.vessel("carotid", "blood_art", cca, r, wall=0.8)
            ica = [
                (cx, cy, bif),
                (cx + side * 4, cy + 8, bif + 25),
                (cx + side * 2, cy + 12, self.z(225)),
                (side * 20.0, cy + 10, self.z(250)),
            ]
            eca = [
                (cx, cy, bif),
                (cx - side * 4, cy - 6, bif + 30),
                (cx + side * 6, cy - 4, self.z(230)),
            ]
            self.vessel(
                "carotid", "blood_art", ica, [r * 1.1, r * 0.85, r * 0.8, r * 0.75], wall=0.6
            )
            self.vessel("carotid", "blood_art", eca, [r * 0.8, r * 0.65, r * 0.5], wall=0.5)
            self.carotid_bulbs.append((cx, cy, bif))
            self.carotid_radii.append(r)
            self.jugular_vein(side, cy)

    def jugular_vein(self, side: float, cy: float) -> None:
        """The internal jugular vein beside the carotid, and its junction with the
        subclavian vein."""
        rng, na, nb, yn = self.rng, self.p.neck_a, self.p.neck_b, self.yn
        jr = rng.uniform(4.5, 9.0) * (1.2 if side < 0 else 0.9)
        jx = side * (na * 0.62 + rng.uniform(-2, 4))
        jug = [
            (side * 45.0, -0.1 * self.B(self.z(68)), self.z(68)),
            (jx, cy - 4, self.z(95)),
            (jx, cy + 2, self.z(170)),
            (side * 38.0, yn + nb * 0.15, self.z(215)),
            (side * 30.0, yn + nb * 0.35, self.z(232)),
        ]
        self.tube("jugular_vein", "blood_jugular", jug, [jr * 0.8, jr, jr, jr * 0.8, jr * 0.6])
        self.tube(
            "jugular_vein",
            "blood_sv",
            [
                (side * 45.0, -0.1 * self.B(self.z(68)), self.z(68)),
                (side * 100.0, -0.05 * self.B(self.z(70)), self.z(72)),
            ],
            5.0,
        )

    def neck_lymph_nodes(self) -> None:
        """Lymph nodes along the jugular chain."""
        rng, na, nb, yn = self.rng, self.p.neck_a, self.p.neck_b, self.yn
        for _ in range(int(rng.integers(3, 9))):
            side = rng.choice([-1.0, 1.0])
            z = self.z(rng.uniform(90, 180))
            x, y = side * (na * 0.68 + rng.uniform(0, 8)), yn - nb * 0.15 + rng.uniform(-10, 10)
            r = rng.uniform(3, 7)
            self.ellipse(
                "lymph_node",
                "lymph",
                [
                    (z - r * 1.6, x, y, 0.5, 0.5),
                    (z, x, y, r * 1.4, r),
                    (z + r * 1.6, x, y, 0.5, 0.5),
                ],
            )

    def mouth_floor(self) -> None:
        """Floor of the mouth: tongue, submandibular and parotid glands."""
        na, nb, yn = self.p.neck_a, self.p.neck_b, self.yn
        tongue = [(self.z(n), 0.0, yn - nb * f, a, b) for n, f, a, b in TONGUE]
        self.ellipse("muscle", "muscle", tongue)
        for side in (-1.0, 1.0):
            sx = side * na * 0.72
            glands = [(self.z(n), sx, yn - nb * f, a, b) for n, f, a, b in SUBMANDIBULAR]
            self.ellipse("salivary_gland", "salivary", glands)
            parotid = [(self.z(n), side * na * fx, yn + dy, a, b) for n, fx, dy, a, b in PAROTID]
            self.ellipse("salivary_gland", "parotid", parotid)

    def mandible(self) -> None:
        """The mandible's arch and rami, with the teeth."""
        na, nb, yn = self.p.neck_a, self.p.neck_b, self.yn
        mw = na * 0.78
        md = nb * 0.95
        my = yn + 8
        for n in np.arange(Z_MANDIBLE_LOW + 6, Z_OCCLUSAL - 6, 5.0):
            z = self.z(n)
            pts = []
            for t in np.linspace(-1.4, 1.4, 11):
                pts.append((mw * np.sin(t), my - md * np.cos(t) * 1.0, z))
            self.tube("bone_cortical", "cortical", pts, 4.8)
            self.tube("bone_trabecular", "marrow", pts, 2.4)
        for side in (-1.0, 1.0):
            x0 = side * mw * np.sin(1.4)
            y0 = my - md * np.cos(1.4)
            self.add(
                Capsule.make(
                    LABEL["bone_cortical"],
                    "cortical",
                    [
                        (self.z(Z_OCCLUSAL - 8), x0, y0 - 8, x0 + side * 2, y0 + 12, 3.5),
                        (self.z(Z_SKULL_BASE), x0 + side * 6, y0 + 2, x0 + side * 8, y0 + 14, 4.5),
                    ],
                )
            )
        self.teeth(mw, md, my)

    def teeth(self, mw: float, md: float, my: float) -> None:
        """Lower and upper teeth along the dental arch; fillings and crowns are metal."""
        p, rng = self.p, self.rng
        zo = self.z(Z_OCCLUSAL)
        n_teeth = 14
        missing = rng.random(n_teeth * 2) < (0.05 + p.age / 400.0)
        fillings = set()
        if p.dental_metal:
            fillings = set(
                rng.choice(n_teeth * 2, size=int(rng.integers(1, 7)), replace=False).tolist()
            )
        for jaw, sign in ((0, -1.0), (1, 1.0)):
            for i, t in enumerate(np.linspace(-1.3, 1.3, n_teeth)):
                k = jaw * n_teeth + i
                if missing[k]:
                    continue
                x = 0.9 * mw * np.sin(t)
                y = my - 0.9 * md * np.cos(t)
                r = 3.2 + 1.8 * abs(t) / 1.3
                crown = (x, y, zo + sign * 1.0)
                root = (x, y, zo + sign * 20.0)
                self.tube("teeth", "dentin", [crown, root], [r, r * 0.5])
                self.tube("teeth", "enamel", [crown, (x, y, zo + sign * 6.0)], [r * 0.95, r * 0.8])
                if k in fillings:
                    self.tube(
                        "metal",
                        "metal",
                        [(x, y, zo + sign * 1.5), (x, y, zo + sign * 4.5)],
                        r * rng.uniform(0.5, 0.9),
                    )
                    self.metal.append(
                        Metal(x, y, zo + sign * 1.5 - 1, zo + sign * 4.5 + 1, rng.uniform(0.6, 1.0))
                    )
        self.ellipse(
            "bone_cortical",
            "cortical",
            [
                (self.z(Z_PALATE - 3), 0.0, my - md * 0.6, 0.5, 0.5),
                (self.z(Z_PALATE), 0.0, my - md * 0.6, mw * 0.7, md * 0.5),
                (self.z(Z_PALATE + 4), 0.0, my - md * 0.6, 0.5, 0.5),
            ],
        )
