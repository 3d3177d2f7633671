"""The heart, the great vessels, airways and oesophagus in the mediastinal fat.

Vessel courses are tables of (x mm, y as a fraction of the cavity's half depth at the
carina ``B0``, nominal z); the heart's parts are in its own frame (along and across
its long axis, scaled with the heart).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ivcontrast.synth.anatomy.base import Z_APEX, Z_ARCH, BuilderBase, cuts, tube_samples
from ivcontrast.synth.outlines import Star, hull_radii
from ivcontrast.synth.physiology import LABEL

Point = tuple[float, float, float]
Path = list[Point]
PathRows = tuple[tuple[float, float, float], ...]  # x, y / B0, nominal z

# Heart: mm along z from its centre (scaled) and the size there (fraction of the largest).
HEART_PROFILE = ((-58, 0.05), (-50, 0.5), (-30, 0.8), (0, 1.0), (30, 0.92), (50, 0.6), (62, 0.08))
HEART_SIZE = (62.0, 47.0)  # half axes (mm) of the largest section, before scaling
# Chambers: label, blood, centre along and across the long axis, half axes, the top and
# bottom (mm below the heart's centre) and their turn from the heart's axis.
CHAMBERS = (
    ("heart_lv", "blood_art", 8, 13, 26, 17, -18, 52, 0.0),
    ("heart_rv", "blood_pa", -4, -22, 36, 11, -28, 45, 0.0),
    ("heart_ra", "blood_sv", -42, -10, 22, 20, -25, 42, 0.8),
    ("heart_la", "blood_art", -30, 28, 26, 15, -62, -12, 0.3),
)
CORONARIES = ((-20, -36), (30, -12), (-30, 18))  # in the grooves; the first two calcify
# The aorta: ascending and arch (x, y / B0, nominal z), after the root above the heart;
# descending: x from its drawn offset, the y of the spine at a nominal z plus an
# offset, nominal z; then its end in the abdomen. Radii: fractions of the patient's.
AORTA_ARCH: PathRows = (
    (-8.0, -0.22, -35),
    (-14.0, -0.28, -10),
    (-14.0, -0.26, 12),
    (-6.0, -0.1, Z_ARCH),
    (10.0, 0.2, Z_ARCH + 2),
)
AORTA_DESCENDING = (
    (-2, 15, -20, 14),
    (0, -20, -22, -20),
    (-2, -100, -22, -100),
    (-10, -170, -22, -170),
)
AORTA_RADII = (0.95, 1.05, 1.1, 1.05, 0.95, 0.9, 0.85, 0.8, 0.78, 0.75, 0.68)
TRACHEA_LEVELS = (90, 60, 30, 0)
# Main bronchi from the carina: x, y offsets (mm) and nominal z of their two points.
BRONCHI = (((-25, 3, -14), (-45, 6, -28)), ((28, 7, -20), (48, 12, -38)))
SVC: PathRows = ((-36.0, -0.2, 50), (-34.0, -0.17, 0), (-36.0, -0.1, -45))
SVC_RADII = [9.5, 10.5, 11.5]
PULMONARY_TRUNK: PathRows = ((12.0, -0.32, -25), (16.0, -0.1, -10))  # after its root
LEFT_PA: PathRows = ((38.0, 0.0, -6), (52.0, 0.08, -12))
RIGHT_PA: PathRows = ((0.0, -0.02, -13), (-30.0, 0.0, -14), (-52.0, 0.08, -14))
PA_RADII = {"trunk": [13.5, 14.0, 13.0], "left": [11.0, 10.0, 8.0], "right": [11.0, 10.5, 9.5, 8.0]}
LUNG_VEIN_LEVELS = (-25.0, -50.0)
AZYGOS_RADII = [3.5, 4.0, 4.5, 4.5, 4.5]
OESOPHAGUS_LEVELS = (200, 150, 110, 60, 20, -20, -60, -100, -140)
# Branches of the arch and the veins of the thoracic inlet.
BRACHIOCEPHALIC_TRUNK: PathRows = ((-4.0, -0.12, Z_ARCH + 2), (-14.0, -0.1, 50), (-20.0, -0.06, 62))
LEFT_CCA: PathRows = ((4.0, -0.02, Z_ARCH + 2), (18.0, 0.0, 60))
LEFT_SUBCLAVIAN: PathRows = (
    (12.0, 0.12, Z_ARCH + 2),
    (30.0, 0.15, 55),
    (52.0, 0.12, 68),
    (95.0, 0.05, 72),
)
RIGHT_SUBCLAVIAN: PathRows = ((-50.0, 0.05, 70), (-95.0, 0.05, 72))  # from the trunk's end
BRANCH_RADII = {"bct": 7.0, "lcca": 4.5, "lsa": 5.0, "rsa": 5.0}
LEFT_BCV: PathRows = (
    (-32.0, -0.2, 45),
    (-5.0, -0.32, 52),
    (30.0, -0.22, 62),
    (48.0, -0.1, 68),
    (100.0, -0.05, 70),
)
RIGHT_BCV: PathRows = ((-36.0, -0.2, 48), (-42.0, -0.15, 65), (-100.0, -0.05, 70))
BCV_RADII = {"left": [7.0, 6.5, 6.5, 6.0, 5.5], "right": [8.0, 7.0, 5.5]}


@dataclass(frozen=True)
class HeartFrame:
    """The heart's centre, long-axis angle, centre z and scale."""

    hx: float
    hy: float
    ang: float
    zc: float
    hs: float

    def loc(self, pp: float, qq: float) -> tuple[float, float]:
        ca, sa = np.cos(self.ang), np.sin(self.ang)
        return self.hx + pp * ca - qq * sa, self.hy + pp * sa + qq * ca


@dataclass
class Courses:
    """The mediastinal paths, kept for the fat that wraps them all."""

    asc: Path
    rad: list[float]
    tr: Path
    svc: Path
    pt: Path
    rt: float = 0.0
    lpa: Path = field(default_factory=list)
    rpa: Path = field(default_factory=list)
    az: Path = field(default_factory=list)
    branches: dict[str, Path] = field(default_factory=dict)
    lbcv: Path = field(default_factory=list)
    rbcv: Path = field(default_factory=list)

    def tubes(self) -> list[tuple[Sequence[Sequence[float]], Sequence[float]]]:
        lsa_med = [q for q in self.branches["lsa"] if abs(q[0]) < 40.0]
        return [
            (self.asc, self.rad),
            (self.svc, SVC_RADII),
            (self.pt, PA_RADII["trunk"]),
            (self.lpa[:2], [11.0, 10.0]),
            (self.rpa[:3], [11.0, 10.5, 9.5]),
            (self.tr, [self.rt + 2.0] * len(self.tr)),
            (self.az, AZYGOS_RADII),
            (self.branches["bct"], [7.0] * 3),
            (self.branches["lcca"], [4.5] * 2),
            (lsa_med, [5.0] * len(lsa_med)),
            ([q for q in self.lbcv if abs(q[0]) < 50.0], [7.0] * 4),
            (self.rbcv[:2], [8.0, 7.0]),
        ]


class MediastinumParts(BuilderBase):
    def b0_path(self, rows: PathRows) -> Path:
        """Points from (x, y / B0, nominal z) rows."""
        B0 = self.B(0.0)
        return [(x, fy * B0, self.z(n)) for x, fy, n in rows]

    def mediastinum(self) -> None:
        heart_start = len(self.shapes)
        heart = self.heart()
        heart_end = len(self.shapes)
        m = self.great_vessel_courses(heart)
        # The vessels' fat is painted under the heart: no ring of fat inside the heart
        # where the aortic root and the pulmonary trunk leave it.
        halos = self.shapes[heart_end:]
        self.shapes[heart_start:] = halos + self.shapes[heart_start:heart_end]
        self.airways(m)
        self.oesophagus_tube()
        self.central_vessels(heart, m)
        self.thoracic_inlet(m)
        self.thymus_and_nodes()
        # The mediastinum: the vessels, airways and oesophagus sit in one body of fat
        # between the lungs (the convex hull of them all, from the sternum to the
        # spine), painted under the heart and everything above.
        fat = self.mediastinal_fat(m.tubes(), heart.zc + 35 * self.h)
        self.shapes.insert(heart_start, fat)

    def heart(self) -> HeartFrame:
        """Heart: centre, long axis pointing to the left, front and feet; pericardium and
        epicardial fat, chambers, coronary arteries."""
        p, rng = self.p, self.rng
        B0 = self.B(0.0)
        hs = p.heart_scale * p.cavity_a / 132.0
        hx, hy = 14.0 + rng.uniform(-8, 10), -0.2 * B0 + rng.uniform(-6, 6)
        ang = np.deg2rad(rng.uniform(-52, -30))
        zc = self.z(-92) + rng.uniform(-10, 10)
        h = HeartFrame(hx, hy, ang, zc, hs)
        ha, hb = HEART_SIZE
        outer = [
            (zc - dz * self.h, hx - 8 * (dz > 30), hy, ha * hs * s, hb * hs * s, ang)
            for dz, s in HEART_PROFILE
        ]
        halo = 6 + 14 * p.visceral_fat
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
        for label, tissue, pp, qq, a, b, zt, zb, rot in CHAMBERS:
            x, y = h.loc(pp * hs, qq * hs)
            kn = [
                (zc - zb * self.h, x, y, 0.5, 0.5),
                (zc - (zb * 0.7 + zt * 0.3) * self.h, x, y, a * hs, b * hs),
                (zc - (zt * 0.8 + zb * 0.2) * self.h, x, y, a * hs, b * hs),
                (zc - zt * self.h, x, y, 0.5, 0.5),
            ]
            self.ellipse(label, tissue, kn, angle=ang + rot)
        for pp, qq in CORONARIES:
            x, y = h.loc(pp * hs, qq * hs)
            pts = [
                (x, y, zc + 40 * self.h),
                (x + rng.uniform(-8, 8), y + rng.uniform(-8, 8), zc),
                (x + 10, y - 6, zc - 45 * self.h),
            ]
            self.tube("coronary_artery", "blood_art", pts, 1.8)
        self.coronary_pts = [(*h.loc(pp * hs, qq * hs), zc + 20) for pp, qq in CORONARIES[:2]]
        return h

    def great_vessel_courses(self, h: HeartFrame) -> Courses:
        """The aorta's course (radii grow slightly with age), the trachea, SVC and
        pulmonary trunk, each wrapped in fat."""
        p = self.p
        vf = p.visceral_fat
        desc_x = 22.0 + self.rng.uniform(0, 8)
        asc: Path = [(h.hx - 12, h.hy + 8, h.zc + 35 * self.h), *self.b0_path(AORTA_ARCH)]
        asc += [
            (desc_x + dx, self.spine_y(self.z(ns)) + dy, self.z(n))
            for dx, ns, dy, n in AORTA_DESCENDING
        ]
        asc.append((6.0, self.spine_y(self.z(-330)) - 24, self.z(-330)))
        rad = [p.aorta_radius * f for f in AORTA_RADII]
        self.aorta_pts = asc
        self.aorta_r = rad
        self.tube("fat", "fat", asc, [r + 5 + 6 * vf for r in rad])
        tr = [(*self.trachea_pos(self.z(n)), self.z(n)) for n in TRACHEA_LEVELS]
        self.tube("fat", "fat", tr, 14 + 5 * vf)
        svc = self.b0_path(SVC)
        self.tube("fat", "fat", svc, 15 + 4 * vf)
        pt = [(h.hx - 2, h.hy - 25, self.z(-55)), *self.b0_path(PULMONARY_TRUNK)]
        self.tube("fat", "fat", pt, 18 + 4 * vf)
        return Courses(asc=asc, rad=rad, tr=tr, svc=svc, pt=pt)

    def airways(self, m: Courses) -> None:
        """The trachea and the main bronchi: wall, then air."""
        m.rt = rt = self.rng.uniform(7.5, 10.5)
        self.tube("airway_wall", "airway_wall", m.tr, rt + 2.0)
        self.tube("airway", "air", m.tr, rt)
        cx, cy = m.tr[-1][0], m.tr[-1][1]
        for (x1, y1, n1), (x2, y2, n2) in BRONCHI:
            pts = [(cx, cy, 0.0), (cx + x1, cy + y1, self.z(n1)), (cx + x2, cy + y2, self.z(n2))]
            rb = rt * 0.75
            self.tube("airway_wall", "airway_wall", pts, rb + 1.8)
            self.tube("airway", "air", pts, rb)

    def oesophagus_tube(self) -> None:
        """Oesophagus: collapsed muscular tube between trachea and spine, air or fluid
        inside, ending at the stomach."""
        B0 = self.B(0.0)
        oe = []
        for n in OESOPHAGUS_LEVELS:
            z = self.z(n)
            _, ty = self.trachea_pos(z)
            y = self.spine_y(z) - 24 if n < 100 else ty + 18
            x = 4.0 + (0 if n > 20 else (20 - n) * 0.12) + self.spine_x(z)
            oe.append((z, x, y, 9.0, 6.5))
        oe.append((self.z(-170), 0.35 * self.p.cavity_a, -0.05 * B0, 9.0, 8.0))
        oe.append((self.z(-175), 0.38 * self.p.cavity_a, -0.08 * B0, 0.5, 0.5))
        self.oesophagus = oe
        self.ellipse("oesophagus", "oesophagus", oe)
        self.ellipse(
            "oesophagus_lumen",
            "oesophagus_lumen",
            [(k[0], k[1], k[2], k[3] * 0.45, k[4] * 0.35) for k in oe],
        )

    def central_vessels(self, h: HeartFrame, m: Courses) -> None:
        """Aorta, pulmonary trunk and arteries, pulmonary veins, SVC, azygos, IVC."""
        p = self.p
        B0 = self.B(0.0)
        ys = self.spine_y
        self.vessel("aorta", "blood_art", m.asc, m.rad, wall=1.5)
        m.lpa = [m.pt[-1], *self.b0_path(LEFT_PA)]
        m.rpa = [m.pt[-1], *self.b0_path(RIGHT_PA)]
        self.vessel("pulmonary_artery", "blood_pa", m.pt, PA_RADII["trunk"], wall=1.0)
        self.vessel("pulmonary_artery", "blood_pa", m.lpa, PA_RADII["left"], wall=1.0)
        self.vessel("pulmonary_artery", "blood_pa", m.rpa, PA_RADII["right"], wall=1.0)
        for side in (-1.0, 1.0):
            for dz in LUNG_VEIN_LEVELS:
                pts = [
                    (side * 50.0, 0.2 * B0, self.z(dz)),
                    (side * 16.0 + 5, 0.28 * B0, self.z(-45 + dz * 0.3)),
                ]
                self.tube("lung_vein", "blood_art", pts, 5.5)
        svc_t = "blood_sv_inj" if p.injection_side == "right" else "blood_sv"
        self.vessel("svc", svc_t, m.svc, SVC_RADII, wall=0.8)
        m.az = [
            (-4.0 + self.spine_x(self.z(-150)), ys(self.z(-150)) - 18, self.z(-150)),
            (-10.0, ys(self.z(0)) - 20, self.z(0)),
            (-16.0, ys(self.z(8)) - 28, self.z(8)),
            (-30.0, -0.05 * B0, self.z(12)),
            (-34.0, -0.16 * B0, self.z(8)),
        ]
        self.tube("azygos", "blood_azygos", m.az, AZYGOS_RADII)
        ivc = [
            (-24.0, 0.22 * p.cavity_b, self.z(-330)),
            (-26.0, 0.1 * p.cavity_b, self.z(-190)),
            (-28.0, 0.0, h.zc - 45 * self.h),
            (-34.0, h.hy + 6, h.zc - 25 * self.h),
        ]
        self.tube("ivc", "blood_ivc", ivc, [11.0, 12.0, 13.0, 12.0])
        self.abdominal_crura()

    def thoracic_inlet(self, m: Courses) -> None:
        """Branches of the arch and the veins of the thoracic inlet."""
        p = self.p
        vf = p.visceral_fat
        bct = self.b0_path(BRACHIOCEPHALIC_TRUNK)
        lcca0 = self.b0_path(LEFT_CCA)
        lsa = self.b0_path(LEFT_SUBCLAVIAN)
        rsa = [bct[-1], *self.b0_path(RIGHT_SUBCLAVIAN)]
        self.arch_branches = m.branches = {"bct": bct, "lcca": lcca0, "lsa": lsa, "rsa": rsa}
        for name, pts in m.branches.items():
            self.tube("fat", "fat", pts, BRANCH_RADII[name] + 4 + 3 * vf)
        for name, pts in m.branches.items():
            self.vessel("arch_branch", "blood_art", pts, BRANCH_RADII[name], wall=0.8)
        inj_l = "blood_sv_inj" if p.injection_side == "left" else "blood_sv"
        inj_r = "blood_sv_inj" if p.injection_side == "right" else "blood_sv"
        m.lbcv = self.b0_path(LEFT_BCV)
        m.rbcv = self.b0_path(RIGHT_BCV)
        self.tube("brachiocephalic_vein", inj_l, m.lbcv, BCV_RADII["left"])
        self.tube("brachiocephalic_vein", inj_r, m.rbcv, BCV_RADII["right"])

    def thymus_and_nodes(self) -> None:
        """Thymic fat and a few mediastinal lymph nodes."""
        rng = self.rng
        B0 = self.B(0.0)
        vf = self.p.visceral_fat
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

    def abdominal_crura(self) -> None:
        """The diaphragm's crura beside the aorta."""
        B = self.p.cavity_b
        for side in (-1.0, 1.0):
            pts = [
                (side * 20.0, self.spine_y(self.z(-250)) - 20, self.z(-250)),
                (side * 16.0, self.spine_y(self.z(-190)) - 30, self.z(-185)),
                (side * 28.0, -0.05 * B, self.z(-150)),
            ]
            self.tube("muscle", "muscle", pts, [7.0, 5.0, 3.0])
