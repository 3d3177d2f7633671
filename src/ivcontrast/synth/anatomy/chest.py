"""The rib cage and shoulder girdle, and the lungs with their vessel and airway trees."""

from __future__ import annotations

import numpy as np

from ivcontrast.synth.anatomy.base import (
    VERTEBRAE,
    Z_APEX,
    Z_DOME_L,
    Z_DOME_R,
    Z_NOTCH,
    BuilderBase,
    Metal,
)
from ivcontrast.synth.geometry import Capsule, Tube
from ivcontrast.synth.physiology import LABEL

# Sternum: nominal z, half width, half depth (manubrium, body, xiphoid).
STERNUM: tuple[tuple[float, float, float], ...] = (
    (60, 10, 5),
    (55, 26, 9),
    (25, 22, 8),
    (18, 15, 7),
    (-60, 16, 7),
    (-110, 13, 6),
    (-125, 6, 4),
    (-135, 0.1, 0.1),
)
STERNOTOMY_WIRES = (30.0, 0.0, -30.0, -60.0, -90.0)  # nominal z of the wire loops
SCAPULA_LEVELS = (78, 60, 30, 0, -40, -75)
# Glenoid and humeral head: nominal z and radii (mm).
GLENOID: tuple[tuple[float, float, float], ...] = (
    (45, 0.1, 0.1),
    (52, 8, 12),
    (70, 9, 13),
    (76, 0.1, 0.1),
)
HUMERAL_HEAD: tuple[tuple[float, float], ...] = ((38, 12), (50, 22), (68, 22), (80, 8))
SHOULDER_BAND = (42.0, 76.0)  # nominal z of the streaks between the humeral heads


# How far round the chest a rib reaches (fraction of a half turn) for the false and
# floating ribs; the true ribs (1-7) reach 0.97 - 0.012 k, to the costal cartilage.
FALSE_RIB_END = {8: 0.8, 9: 0.72, 10: 0.64, 11: 0.48, 12: 0.36}
# Directions of the segmental lung vessels from the hilum (x towards the side):
# apical, posterior, anterior, lateral, and four basal ones.
LUNG_SEGMENTS = (
    (0.35, 0.1, 1.0),
    (0.5, 0.7, 0.6),
    (0.5, -0.8, 0.5),
    (1.0, 0.1, 0.1),
    (0.6, -0.6, -0.4),
    (0.4, 0.6, -1.0),
    (0.8, 0.2, -0.9),
    (0.6, -0.5, -0.8),
)


class ChestParts(BuilderBase):
    def rib_path(
        self, k: int, side: float
    ) -> tuple[list[tuple[float, ...]], list[tuple[float, ...]]]:
        """Rib k (1..12) of one side: bony rib points and costal cartilage points.

        The rib leaves the transverse process, runs back and out to its angle, then
        follows the inside of the chest wall forwards and down; its front end lies
        several vertebrae lower than its head, so axial slices cut it obliquely.
        """
        rng = self.rng
        _, zc, _ = VERTEBRAE[6 + k - 1]
        z0 = self.z(zc) + 4.0
        drop = self.z(45.0 + 7.0 * min(k, 9)) * rng.uniform(0.85, 1.15)
        end = 0.97 - 0.012 * k if k <= 7 else FALSE_RIB_END[k]
        ys = self.spine_y(z0)
        xs = self.spine_x(z0)
        pts: list[tuple[float, ...]] = [
            (xs + side * 18.0, ys + 4.0, z0),
            (xs + side * 34.0, ys + 14.0, z0 - 3.0),
        ]
        start = 0.12
        n = 14
        for i in range(n + 1):
            f = start + (end - start) * i / n
            theta = np.pi / 2 + side * np.pi * f  # +y (back) -> lateral -> -y (front)
            z = z0 - 6.0 - drop * ((f - start) / (end - start)) ** 1.1
            a, b = self.A(z) + 4.5, self.B(z) + 4.5
            r = a * b / np.hypot(b * np.cos(theta), a * np.sin(theta))
            pts.append((r * np.cos(theta) + self.spine_x(z) * 0.3, r * np.sin(theta), z))
        cart: list[tuple[float, ...]] = []
        if k <= 10:
            xe, ye, ze = pts[-1]
            zs = self.z(max(-115.0, zc - 30 - 8 * k)) if k <= 7 else ze + 15
            cart = [
                (xe, ye, ze),
                (xe * 0.5, ye - 2, (ze + zs) / 2),
                (side * 14.0, -self.B(zs) - 6, zs),
            ]
        return pts, cart

    def rib_cage(self) -> None:
        """Ribs, sternum, clavicles, scapulae and humeral heads: painted after the lungs
        and the mediastinum, which end where the bones begin."""
        rng = self.rng
        # Ribs: cortical shell, marrow; costal cartilage to the sternum.
        for k in range(1, 13):
            for side in (-1.0, 1.0):
                pts, cart = self.rib_path(k, side)
                rr = rng.uniform(3.8, 5.0) * (1.3 if k == 1 else 1.0)
                self.tube("bone_cortical", "cortical", pts, rr)
                self.tube("bone_trabecular", "marrow", pts, rr - 1.3)
                if cart:
                    self.tube("cartilage", "cartilage", cart, rr * 0.95)
        self.sternum()
        for side in (-1.0, 1.0):
            self.shoulder_girdle(side)

    def sternum(self) -> None:
        """Manubrium, body, xiphoid: cortical shell around marrow; sternotomy wires."""
        st = []
        for n, a, b in STERNUM:
            z = self.z(n)
            st.append((z, 0.0, -self.B(z) - b - 2.0, a, b))
        self.ellipse("bone_cortical", "cortical", st)
        self.ellipse(
            "bone_trabecular",
            "trabecular",
            [(k[0], k[1], k[2], k[3] - 1.6, k[4] - 1.6) for k in st],
        )
        if self.p.sternotomy:
            for level in STERNOTOMY_WIRES:
                z = self.z(level)
                y = -self.B(z) - 9.0
                self.tube("metal", "metal", [(-9, y, z), (9, y, z + 1.0)], 0.9)
                self.metal.append(Metal(0.0, y, z - 1.0, z + 2.0, 0.6))

    def shoulder_girdle(self, side: float) -> None:
        """Clavicle, scapula and glenoid of one side; the humeral head with the arm down,
        and the beam-hardening band between the two heads."""
        p = self.p
        zn = self.z(Z_NOTCH)
        zc = self.z(70)
        lat = side * (self.A(zc) + 30)
        pts = [
            (side * 20.0, -self.B(zn) - 8, zn),
            (side * 55.0, -self.B(zn) - 14, zn + 8),
            (side * 95.0, -self.B(zn) * 0.6, zn + 15),
            (lat, 0.05 * self.B(zc), zc),
        ]
        self.tube("bone_cortical", "cortical", pts, 6.5)
        self.tube("bone_trabecular", "marrow", pts, 4.6)
        blade = []
        for n in SCAPULA_LEVELS:
            z = self.z(n)
            A, B = self.A(z), self.B(z)
            med = (side * A * 0.45, B + p.muscle_mm * 0.4)
            latp = (side * (A * 0.92 + 6), B * 0.45 + 8)
            r = 2.5 if n < 55 else 4.5
            blade.append((z, med[0], med[1], latp[0], latp[1], r if n > -70 else 0.3))
        self.add(Capsule.make(LABEL["bone_cortical"], "cortical", blade))
        zg = self.z(62)
        xg = side * (self.A(zg) + 18)
        glenoid = [(self.z(n), xg, 0.3 * self.B(zg), a, b) for n, a, b in GLENOID]
        self.ellipse("bone_cortical", "cortical", glenoid)
        if p.arms != "down":
            return
        xh = xg + side * 24
        head = [(self.z(n), xh, 0.25 * self.B(zg), r, r) for n, r in HUMERAL_HEAD]
        self.ellipse("bone_cortical", "cortical", head)
        self.ellipse(
            "bone_trabecular",
            "trabecular",
            [(k[0], k[1], k[2], k[3] - 2, k[4] - 2) for k in head],
        )
        lo, hi = SHOULDER_BAND

        def pair(
            z: float, xh: float = abs(xh), yh: float = 0.25 * self.B(zg)
        ) -> tuple[float, float, float, float] | None:
            if not self.z(lo) <= z <= self.z(hi):
                return None
            return (-xh, yh, xh, yh)

        if side > 0:
            self.dense_pairs.append((pair, self.rng.uniform(25, 60)))

    def lung_params(self, z: float, side: float) -> tuple[float, float, float, float] | None:
        n = z / self.h
        top = Z_APEX + self.rng_apex[side]
        if n > top or n < -235:
            return None
        A, B = self.A(z), self.B(z)
        s = float(np.clip((top - n) / 18.0, 0.0, 1.0)) ** 0.5
        return side * A * 0.46, 0.02 * B, A * 0.52 * s, B * 0.98 * s

    def lungs(self) -> None:
        """Mediastinal fat fills the cavity; each lung is three overlapping ellipses: the
        main body, the anterior part reaching the midline behind the sternum, and the
        posterior gutter beside the spine."""
        rng = self.rng
        self.rng_apex = {-1.0: rng.uniform(-5, 8), 1.0: rng.uniform(-5, 8)}
        cav = []
        for n in np.arange(-235.0, Z_APEX + 12.0, 5.0):
            z = self.z(n)
            cav.append((z, 0.0, 0.0, self.A(z), self.B(z)))
        self.ellipse("fat", "fat", cav)
        for side in (-1.0, 1.0):
            main, front, back = [], [], []
            for n in np.arange(-235.0, Z_APEX + 12.0, 5.0):
                z = self.z(n)
                prm = self.lung_params(z, side)
                if prm is None:
                    continue
                cx, cy, a, b = prm
                s = a / (self.A(z) * 0.52)
                A, B = self.A(z), self.B(z)
                main.append((z, cx, cy, a, b))
                front.append((z, side * 0.3 * A, -0.5 * B, 0.3 * A * s, 0.42 * B * s))
                back.append((z, side * 0.25 * A, 0.55 * B, 0.22 * A * s, 0.42 * B * s))
            for knots in (main, front, back):
                self.ellipse("lung", "lung", knots)
        for side in (-1.0, 1.0):
            self.lung_trees(side)

    def inside_lung(self, x: float, y: float, z: float, margin: float = 4.0) -> bool:
        side = 1.0 if x > 0 else -1.0
        prm = self.lung_params(z, side)
        if prm is None:
            return False
        cx, cy, a, b = prm
        a, b = a - margin, b - margin
        if a <= 0 or b <= 0 or abs(x) < 30:
            return False
        if ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 > 1.0:
            return False
        return z > self.dome_z(x, y) + margin

    def dome_z(self, x: float, y: float) -> float:
        side_top = self.z(Z_DOME_R) if x < 0 else self.z(Z_DOME_L)
        A, B = self.p.cavity_a, self.p.cavity_b
        xc = -0.45 * A if x < 0 else 0.45 * A
        dy = ((y + 0.1 * B) / B) ** 2 * (0.3 if y < -0.1 * B else 1.0)
        return side_top - 100.0 * (((x - xc) / (0.6 * A)) ** 2 + dy) ** 2

    def lung_trees(self, side: float) -> None:
        """Pulmonary arteries with their bronchi, and pulmonary veins, as branching trees."""
        rng = self.rng
        B = self.B(0.0)
        hilum_a = np.array([side * 52.0, 0.08 * B, self.z(-12)])
        hilum_v = np.array([side * 48.0, 0.22 * B, self.z(-45)])
        art: list[tuple[np.ndarray, np.ndarray, float, float, int]] = []
        vein: list[tuple[np.ndarray, np.ndarray, float, float, int]] = []
        # Segmental trunks: apical, posterior, anterior, lateral, and four basal ones.
        dirs = [(fx * side, fy, fz) for fx, fy, fz in LUNG_SEGMENTS]
        for d0 in dirs:
            d = np.asarray(d0) + rng.normal(0, 0.12, 3)
            d = d / np.linalg.norm(d)
            self._branch(hilum_a, d, 4.8, 30.0, 0, art)
            d2 = d + rng.normal(0, 0.15, 3)
            self._branch(hilum_v, d2 / np.linalg.norm(d2), 4.4, 27.0, 0, vein)
        for segs, label, tissue in (
            (art, "lung_artery", "blood_pa"),
            (vein, "lung_vein", "blood_art"),
        ):
            self._add_segments(segs, label, tissue)
        # Bronchi run beside the arteries of the first generations: wall, then air.
        bron = []
        for p0, p1, r0, r1, gen in art:
            if gen > 3:
                continue
            d = p1 - p0
            off = np.cross(d, [0.0, 0.0, 1.0])
            if np.linalg.norm(off) < 1e-6:
                off = np.array([1.0, 0.0, 0.0])
            off = off / np.linalg.norm(off) * (r0 + 3.0)
            bron.append((p0 + off, p1 + off, r0 * 0.85, r1 * 0.85, gen))
        self._add_segments(
            [(a, b, r0 + 1.0, r1 + 1.0, g) for a, b, r0, r1, g in bron],
            "airway_wall",
            "airway_wall",
        )
        self._add_segments(bron, "airway", "air")

    def _branch(
        self,
        start: np.ndarray,
        direction: np.ndarray,
        radius: float,
        length: float,
        gen: int,
        out: list[tuple[np.ndarray, np.ndarray, float, float, int]],
    ) -> None:
        rng = self.rng
        if radius < 0.7 or gen > 7:
            return
        end = start + direction * length
        steps = 0
        while not self.inside_lung(*end) and steps < 3:
            length *= 0.5
            end = start + direction * length
            steps += 1
        if steps == 3 and gen > 0:
            return
        r_end = radius * 0.85
        out.append((start, end, radius, r_end, gen))
        for _ in range(2):
            axis = rng.normal(0, 1, 3)
            axis -= axis @ direction * direction
            axis /= np.linalg.norm(axis) + 1e-9
            ang = rng.uniform(0.3, 0.7)
            nd = direction * np.cos(ang) + axis * np.sin(ang)
            nd /= np.linalg.norm(nd)
            self._branch(
                end,
                nd,
                radius * rng.uniform(0.66, 0.8),
                length * rng.uniform(0.68, 0.85),
                gen + 1,
                out,
            )

    def _add_segments(
        self, segs: list[tuple[np.ndarray, np.ndarray, float, float, int]], label: str, tissue: str
    ) -> None:
        if not segs:
            return
        p0, p1, r0, r1, _ = zip(*segs, strict=True)
        self.add(
            Tube.segments(
                LABEL[label], tissue, np.array(p0), np.array(p1), np.array(r0), np.array(r1)
            )
        )
