"""The heart, the great vessels, airways and oesophagus in the mediastinal fat."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ivcontrast.synth.anatomy.base import Z_APEX, Z_ARCH, BuilderBase, cuts, tube_samples
from ivcontrast.synth.geometry import Star, hull_radii
from ivcontrast.synth.physiology import LABEL


class MediastinumParts(BuilderBase):
    def mediastinum(self) -> None:
        p, rng = self.p, self.rng
        B0 = self.B(0.0)
        hs = p.heart_scale * p.cavity_a / 132.0
        vf = p.visceral_fat
        heart_start = len(self.shapes)
        # Heart: centre, long axis pointing to the left, front and feet.
        hx, hy = 14.0 + rng.uniform(-8, 10), -0.2 * B0 + rng.uniform(-6, 6)
        ang = np.deg2rad(rng.uniform(-52, -30))
        zc = self.z(-92) + rng.uniform(-10, 10)
        prof = [(-58, 0.05), (-50, 0.5), (-30, 0.8), (0, 1.0), (30, 0.92), (50, 0.6), (62, 0.08)]
        outer = [
            (zc - dz * self.h, hx - 8 * (dz > 30), hy, 62 * hs * s, 47 * hs * s, ang)
            for dz, s in prof
        ]
        halo = 6 + 14 * vf
        self.ellipse(
            "fat", "fat", [(k[0], k[1], k[2], k[3] + halo, k[4] + halo, k[5]) for k in outer]
        )
        self.ellipse(
            "pericardium",
            "pericardium",
            [(k[0], k[1], k[2], k[3] + 3.5, k[4] + 3.5, k[5]) for k in outer],
        )
        self.ellipse(
            "fat", "fat", [(k[0], k[1], k[2], k[3] + 2.0, k[4] + 2.0, k[5]) for k in outer]
        )
        self.ellipse("myocardium", "myocardium", outer)
        ca, sa = np.cos(ang), np.sin(ang)

        def loc(pp: float, qq: float) -> tuple[float, float]:
            return hx + pp * ca - qq * sa, hy + pp * sa + qq * ca

        def chamber(
            label: str,
            tissue: str,
            pp: float,
            qq: float,
            a: float,
            b: float,
            zt: float,
            zb: float,
            rot: float = 0.0,
        ) -> None:
            x, y = loc(pp * hs, qq * hs)
            kn = [
                (zc - zb * self.h, x, y, 0.5, 0.5),
                (zc - (zb * 0.7 + zt * 0.3) * self.h, x, y, a * hs, b * hs),
                (zc - (zt * 0.8 + zb * 0.2) * self.h, x, y, a * hs, b * hs),
                (zc - zt * self.h, x, y, 0.5, 0.5),
            ]
            self.ellipse(label, tissue, kn, angle=ang + rot)

        chamber("heart_lv", "blood_art", 8, 13, 26, 17, -18, 52)
        chamber("heart_rv", "blood_pa", -4, -22, 36, 11, -28, 45)
        chamber("heart_ra", "blood_sv", -42, -10, 22, 20, -25, 42, rot=0.8)
        chamber("heart_la", "blood_art", -30, 28, 26, 15, -62, -12, rot=0.3)
        # Coronary arteries in the grooves, with calcium in older patients.
        for pp, qq in ((-20, -36), (30, -12), (-30, 18)):
            x, y = loc(pp * hs, qq * hs)
            pts = [
                (x, y, zc + 40 * self.h),
                (x + rng.uniform(-8, 8), y + rng.uniform(-8, 8), zc),
                (x + 10, y - 6, zc - 45 * self.h),
            ]
            self.tube("coronary_artery", "blood_art", pts, 1.8)
        self.coronary_pts = [
            (*loc(pp * hs, qq * hs), zc + 20) for pp, qq in ((-20, -36), (30, -12))
        ]
        heart_end = len(self.shapes)
        # Great vessels. Radii grow slightly with age.
        ra = p.aorta_radius
        ys = lambda z: self.spine_y(z)  # noqa: E731
        desc_x = 22.0 + rng.uniform(0, 8)
        asc = [
            (hx - 12, hy + 8, zc + 35 * self.h),
            (-8.0, -0.22 * B0, self.z(-35)),
            (-14.0, -0.28 * B0, self.z(-10)),
            (-14.0, -0.26 * B0, self.z(12)),
            (-6.0, -0.1 * B0, self.z(Z_ARCH)),
            (10.0, 0.2 * B0, self.z(Z_ARCH + 2)),
            (desc_x - 2, ys(self.z(15)) - 20, self.z(14)),
            (desc_x, ys(self.z(-20)) - 22, self.z(-20)),
            (desc_x - 2, ys(self.z(-100)) - 22, self.z(-100)),
            (desc_x - 10, ys(self.z(-170)) - 22, self.z(-170)),
            (6.0, ys(self.z(-330)) - 24, self.z(-330)),
        ]
        rad = [
            ra * 0.95,
            ra * 1.05,
            ra * 1.1,
            ra * 1.05,
            ra * 0.95,
            ra * 0.9,
            ra * 0.85,
            ra * 0.8,
            ra * 0.78,
            ra * 0.75,
            ra * 0.68,
        ]
        self.aorta_pts = asc
        self.aorta_r = rad
        # Fat around the mediastinal vessels and airways.
        self.tube("fat", "fat", asc, [r + 5 + 6 * vf for r in rad])
        tr = [(*self.trachea_pos(self.z(n)), self.z(n)) for n in (90, 60, 30, 0)]
        self.tube("fat", "fat", tr, 14 + 5 * vf)
        svc = [
            (-36.0, -0.2 * B0, self.z(50)),
            (-34.0, -0.17 * B0, self.z(0)),
            (-36.0, -0.1 * B0, self.z(-45)),
        ]
        self.tube("fat", "fat", svc, 15 + 4 * vf)
        pt = [
            (hx - 2, hy - 25, self.z(-55)),
            (12.0, -0.32 * B0, self.z(-25)),
            (16.0, -0.1 * B0, self.z(-10)),
        ]
        self.tube("fat", "fat", pt, 18 + 4 * vf)
        # The vessels' fat is painted under the heart: no ring of fat inside the heart
        # where the aortic root and the pulmonary trunk leave it.
        halos = self.shapes[heart_end:]
        self.shapes[heart_start:] = halos + self.shapes[heart_start:heart_end]
        # Airways.
        rt = rng.uniform(7.5, 10.5)
        self.tube("airway_wall", "airway_wall", tr, rt + 2.0)
        self.tube("airway", "air", tr, rt)
        cx, cy = tr[-1][0], tr[-1][1]
        for pts in (
            [(cx, cy, 0.0), (cx - 25, cy + 3, self.z(-14)), (cx - 45, cy + 6, self.z(-28))],
            [(cx, cy, 0.0), (cx + 28, cy + 7, self.z(-20)), (cx + 48, cy + 12, self.z(-38))],
        ):
            rb = rt * 0.75
            self.tube("airway_wall", "airway_wall", pts, rb + 1.8)
            self.tube("airway", "air", pts, rb)
        # Oesophagus: collapsed muscular tube between trachea and spine, air or fluid inside.
        oe = []
        for n in (200, 150, 110, 60, 20, -20, -60, -100, -140):
            z = self.z(n)
            _, ty = self.trachea_pos(z)
            y = ys(z) - 24 if n < 100 else ty + 18
            x = 4.0 + (0 if n > 20 else (20 - n) * 0.12) + self.spine_x(z)
            oe.append((z, x, y, 9.0, 6.5))
        oe.append((self.z(-170), 0.35 * p.cavity_a, -0.05 * B0, 9.0, 8.0))
        oe.append((self.z(-175), 0.38 * p.cavity_a, -0.08 * B0, 0.5, 0.5))
        self.oesophagus = oe
        self.ellipse("oesophagus", "oesophagus", oe)
        self.ellipse(
            "oesophagus_lumen",
            "oesophagus_lumen",
            [(k[0], k[1], k[2], k[3] * 0.45, k[4] * 0.35) for k in oe],
        )
        # Aorta, pulmonary trunk and arteries, veins.
        self.vessel("aorta", "blood_art", asc, rad, wall=1.5)
        lpa = [pt[-1], (38.0, 0.0, self.z(-6)), (52.0, 0.08 * B0, self.z(-12))]
        rpa = [
            pt[-1],
            (0.0, -0.02 * B0, self.z(-13)),
            (-30.0, 0.0, self.z(-14)),
            (-52.0, 0.08 * B0, self.z(-14)),
        ]
        self.vessel("pulmonary_artery", "blood_pa", pt, [13.5, 14.0, 13.0], wall=1.0)
        self.vessel("pulmonary_artery", "blood_pa", lpa, [11.0, 10.0, 8.0], wall=1.0)
        self.vessel("pulmonary_artery", "blood_pa", rpa, [11.0, 10.5, 9.5, 8.0], wall=1.0)
        for side in (-1.0, 1.0):
            for dz in (-25.0, -50.0):
                pts = [
                    (side * 50.0, 0.2 * B0, self.z(dz)),
                    (side * 16.0 + 5, 0.28 * B0, self.z(-45 + dz * 0.3)),
                ]
                self.tube("lung_vein", "blood_art", pts, 5.5)
        svc_t = "blood_sv_inj" if p.injection_side == "right" else "blood_sv"
        self.vessel("svc", svc_t, svc, [9.5, 10.5, 11.5], wall=0.8)
        az = [
            (-4.0 + self.spine_x(self.z(-150)), ys(self.z(-150)) - 18, self.z(-150)),
            (-10.0, ys(self.z(0)) - 20, self.z(0)),
            (-16.0, ys(self.z(8)) - 28, self.z(8)),
            (-30.0, -0.05 * B0, self.z(12)),
            (-34.0, -0.16 * B0, self.z(8)),
        ]
        self.tube("azygos", "blood_azygos", az, [3.5, 4.0, 4.5, 4.5, 4.5])
        ivc = [
            (-24.0, 0.22 * p.cavity_b, self.z(-330)),
            (-26.0, 0.1 * p.cavity_b, self.z(-190)),
            (-28.0, 0.0, zc - 45 * self.h),
            (-34.0, hy + 6, zc - 25 * self.h),
        ]
        self.tube("ivc", "blood_ivc", ivc, [11.0, 12.0, 13.0, 12.0])
        self.abdominal_crura(asc)
        # Branches of the arch and the veins of the thoracic inlet.
        zb = self.z(Z_ARCH + 2)
        bct = [
            (-4.0, -0.12 * B0, zb),
            (-14.0, -0.1 * B0, self.z(50)),
            (-20.0, -0.06 * B0, self.z(62)),
        ]
        lcca0 = [(4.0, -0.02 * B0, zb), (18.0, 0.0, self.z(60))]
        lsa = [
            (12.0, 0.12 * B0, zb),
            (30.0, 0.15 * B0, self.z(55)),
            (52.0, 0.12 * B0, self.z(68)),
            (95.0, 0.05 * B0, self.z(72)),
        ]
        rsa = [bct[-1], (-50.0, 0.05 * B0, self.z(70)), (-95.0, 0.05 * B0, self.z(72))]
        self.arch_branches = {"bct": bct, "lcca": lcca0, "lsa": lsa, "rsa": rsa}
        for pts, r in ((bct, 7.0), (lcca0, 4.5), (lsa, 5.0), (rsa, 5.0)):
            self.tube("fat", "fat", pts, r + 4 + 3 * vf)
        for pts, r in ((bct, 7.0), (lcca0, 4.5), (lsa, 5.0), (rsa, 5.0)):
            self.vessel("arch_branch", "blood_art", pts, r, wall=0.8)
        inj_l = "blood_sv_inj" if p.injection_side == "left" else "blood_sv"
        inj_r = "blood_sv_inj" if p.injection_side == "right" else "blood_sv"
        lbcv = [
            (-32.0, -0.2 * B0, self.z(45)),
            (-5.0, -0.32 * B0, self.z(52)),
            (30.0, -0.22 * B0, self.z(62)),
            (48.0, -0.1 * B0, self.z(68)),
            (100.0, -0.05 * B0, self.z(70)),
        ]
        rbcv = [
            (-36.0, -0.2 * B0, self.z(48)),
            (-42.0, -0.15 * B0, self.z(65)),
            (-100.0, -0.05 * B0, self.z(70)),
        ]
        self.tube("brachiocephalic_vein", inj_l, lbcv, [7.0, 6.5, 6.5, 6.0, 5.5])
        self.tube("brachiocephalic_vein", inj_r, rbcv, [8.0, 7.0, 5.5])
        # Thymic fat and a few mediastinal lymph nodes.
        self.ellipse(
            "fat",
            "fat",
            [
                (self.z(0), -2.0, -0.6 * B0, 8, 5),
                (self.z(30), 0.0, -0.5 * B0, 18 + 10 * vf, 10),
                (self.z(55), 0.0, -0.45 * B0, 6, 5),
            ],
        )
        for _ in range(int(rng.integers(2, 6))):
            z = self.z(rng.uniform(-40, 40))
            x, y = rng.uniform(-25, 25), rng.uniform(-0.1, 0.2) * B0
            r = rng.uniform(3, 6)
            self.ellipse(
                "lymph_node",
                "lymph",
                [(z - r * 2, x, y, 0.5, 0.5), (z, x, y, r * 1.3, r), (z + r * 2, x, y, 0.5, 0.5)],
                wobble=0.6,
            )
        # The mediastinum: the vessels, airways and oesophagus sit in one body of fat
        # between the lungs (the convex hull of them all, from the sternum to the
        # spine), painted under the heart and everything above.
        lsa_med = [q for q in lsa if abs(q[0]) < 40.0]
        tubes: list[tuple[Sequence[Sequence[float]], Sequence[float]]] = [
            (asc, rad),
            (svc, [9.5, 10.5, 11.5]),
            (pt, [13.5, 14.0, 13.0]),
            (lpa[:2], [11.0, 10.0]),
            (rpa[:3], [11.0, 10.5, 9.5]),
            (tr, [rt + 2.0] * len(tr)),
            (az, [3.5, 4.0, 4.5, 4.5, 4.5]),
            (bct, [7.0] * 3),
            (lcca0, [4.5] * 2),
            (lsa_med, [5.0] * len(lsa_med)),
            ([q for q in lbcv if abs(q[0]) < 50.0], [7.0] * 4),
            (rbcv[:2], [8.0, 7.0]),
        ]
        self.shapes.insert(heart_start, self.mediastinal_fat(tubes, zc + 35 * self.h))

    def mediastinal_fat(
        self, tubes: Sequence[tuple[Sequence[Sequence[float]], Sequence[float]]], heart_top: float
    ) -> Star:
        vf = self.p.visceral_fat
        margin = 3.0 + 5.0 * vf + self.rng.uniform(0, 3)
        knots = []
        n_rays = 48
        samples = tube_samples(tubes)
        for n in np.arange(-170.0, Z_APEX + 6.0, 5.0):
            z = self.z(n)
            circles = cuts(samples, z)
            oe = np.asarray(self.oesophagus)
            if oe[-1, 0] <= z <= oe[0, 0]:
                k = oe[np.argsort(oe[:, 0])]
                x, y, a, b = (float(np.interp(z, k[:, 0], k[:, i])) for i in range(1, 5))
                circles.append((x, y, max(a, b)))
            # the vertebral bodies behind, the sternum in front above the heart
            circles.append((self.spine_x(z), self.spine_y(z) - 10.0, 6.0))
            if z > heart_top:
                circles.append((0.0, -self.B(z) + 10.0 + margin, 8.0))
            if len(circles) < 3:
                knots.append((z, 0.0, 0.0, *np.zeros(n_rays)))
                continue
            cx, cy, radii = hull_radii([(x, y, r + margin) for x, y, r in circles], n_rays)
            knots.append((z, cx, cy, *radii))
        return Star.make(LABEL["fat"], "fat", knots, wobble=2.5)

    def abdominal_crura(self, aorta: Sequence[Sequence[float]]) -> None:
        B = self.p.cavity_b
        for side in (-1.0, 1.0):
            pts = [
                (side * 20.0, self.spine_y(self.z(-250)) - 20, self.z(-250)),
                (side * 16.0, self.spine_y(self.z(-190)) - 30, self.z(-185)),
                (side * 28.0, -0.05 * B, self.z(-150)),
            ]
            self.tube("muscle", "muscle", pts, [7.0, 5.0, 3.0])
