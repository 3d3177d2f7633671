"""The trunk's wall: skin, fat and muscle from the head to the abdomen, the arms,
the breasts and the fat planes between the chest wall's muscles."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

from ivcontrast.synth.anatomy.base import Z_BOTTOM, Z_TOP, BuilderBase, Rng, constant
from ivcontrast.synth.geometry import Capsule
from ivcontrast.synth.outlines import Blob, Layer
from ivcontrast.synth.physiology import LABEL

# Drawn per patient (uniform ranges): how far the muscle wall bulges at the shoulders
# (mm; less with the arms raised), the fat's thickness in front, at the sides and behind
# (multiples of the patient's fat), the groove over the spine (mm), the pectorals and
# latissimus (multiples of the muscle), how much the back flattens on the table, and
# the muscles over the scapulae and the back (multiple of the muscle).
SHOULDER_MM = {"down": (55, 85), "up": (20, 40)}
FAT_FRONT = (0.7, 1.6)
FAT_SIDE = (0.9, 1.6)
FAT_BACK = (0.5, 1.0)
GROOVE_MM = (3, 8)
PECTORALS = (0.6, 1.6)
LATISSIMUS = (0.3, 1.0)
BACK_PRESS = (0.6, 0.95)
SCAPULAR_MUSCLES = (1.2, 2.2)
# Arms: nominal z of the top and bottom of an arm lying beside the trunk, and of one
# raised beside the head (where a chest scan's top slices cut it).
ARM_DOWN_Z = (20, -320)
ARM_UP_Z = (260, 70)


class TorsoParts(BuilderBase):
    def torso(self) -> Blob:
        """Skin, subcutaneous fat and the muscle wall, from the head to the abdomen.

        Offsets from the thoracic cavity: a muscle wall thicker at the sides (latissimus,
        serratus) and in front of the upper chest (pectorals), a hump behind over the
        paraspinal muscles; fat distributed unevenly; the back flattened on the table.
        """
        p, rng = self.p, self.rng
        zs = np.arange(Z_BOTTOM, Z_TOP + 1, 10.0) * self.h
        params, fat, mus = [], [], []
        u = rng.uniform
        shoulder = u(*SHOULDER_MM["down" if p.arms == "down" else "up"])
        f_ant, f_lat, f_post = u(*FAT_FRONT), u(*FAT_SIDE), u(*FAT_BACK)
        groove = u(*GROOVE_MM)
        pect = u(*PECTORALS) * (1.2 if p.sex == "M" else 0.9)
        lat_m = u(*LATISSIMUS) * p.muscle_mm
        press = u(*BACK_PRESS)
        scap = u(*SCAPULAR_MUSCLES)
        for z in zs:
            n = z / self.h
            w = float(np.clip((n - 60) / 55.0, 0.0, 1.0))  # 0 chest .. 1 neck
            head = float(np.clip((n - 190) / 50.0, 0.0, 1.0))
            cy = w * self.yn - head * 18.0
            A, B = self.A(z), self.B(z)
            a = (1 - w) * A + w * p.neck_a + head * 22.0
            b = (1 - w) * B + w * p.neck_b + head * 40.0
            params.append((self.spine_x(z) * 0.3, cy, a, b))
            sh = shoulder * np.exp(-(((n - 62) / 28.0) ** 2))
            chest = 1 - w
            w0 = p.muscle_mm * chest + 6.0 * w
            lat = lat_m * chest * (0.6 if n < -150 else 1.0) + sh
            pec = pect * p.muscle_mm * np.exp(-(((n - 20) / 55.0) ** 2)) * chest
            ps = self.paraspinal(z)
            post = scap * p.muscle_mm * chest * (0.5 if n < -120 else 1.0) + 14.0 * w * (1 - head)
            back = self.spine_y(z) + 38 + 1.25 * ps - cy  # paraspinals' back surface
            hump = max(back - (b + w0 + post), 0.0) * chest
            m = [0.0] * 10
            # lateral: w0 + lat; front: w0 + pec; back: w0 + post (+ hump)
            m[0] = w0 + lat / 2 + (pec + post) / 4
            m[2] = (post - pec) / 2
            m[3] = lat / 2 - (pec + post) / 4
            m[7] = hump
            m[9] = (b + w0 + post + hump * press) if head == 0 else 0.0
            f0 = p.fat_mm * (chest + 0.45 * w) * (1 - 0.7 * head)
            fa, fl, fp = f0 * f_ant, f0 * f_lat, f0 * f_post
            f = list(m)
            f[0] += (fa + fp) / 2 + (fl - (fa + fp) / 2) / 2 + 1.5
            f[2] += (fp - fa) / 2
            f[3] += (fl - (fa + fp) / 2) / 2
            f[8] = groove * chest * (1 - head)
            f[9] = (m[9] + fp * press + 1.5) if head == 0 else 0.0
            mus.append(m)
            fat.append(f)
        outline = Blob(
            label=LABEL["fat"],
            tissue="fat",
            zmin=float(zs[0]),
            zmax=float(zs[-1]),
            zk=zs,
            params=np.array(params),
            layers=[
                # the muscle wall moves less than the skin: fat thickness varies too
                Layer(LABEL["fat"], "fat", np.array(fat), wobble=2.0),
                Layer(LABEL["muscle"], "muscle", np.array(mus), wobble=1.2),
            ],
            skin=rng.uniform(1.2, 2.2),
            skin_tissue="skin",
            skin_label=LABEL["skin"],
            flat_front=self.prone,
        )
        self.add(outline)
        return outline

    def arms(self) -> None:
        p, rng = self.p, self.rng
        for side in (-1.0, 1.0):
            r_arm = rng.uniform(38, 52) + p.fat_mm * 0.6
            if p.arms == "down":
                top, bottom = (self.z(n) for n in ARM_DOWN_Z)
                zs = np.linspace(bottom, top, 8)
                knots = []
                for z in zs:
                    x = side * (self.A(z) + p.muscle_mm + p.fat_mm + r_arm + rng.uniform(8, 25))
                    knots.append((z, x, 0.15 * self.B(z), r_arm * 0.9, r_arm * 1.05))
                self.arm_layers(knots)
                bone = [(k[0], k[1] - side * 4, k[2] + 4, 11.0, 11.0) for k in knots]
                self.arm_bones.append(bone)
                self.ellipse("bone_cortical", "cortical", bone)
                self.ellipse("bone_trabecular", "marrow", [(*b[:3], 6.5, 6.5) for b in bone])
            else:
                # Raised arms lie beside the head; a chest scan's top slices cut them.
                top, bottom = (self.z(n) for n in ARM_UP_Z)
                knots = []
                for z in np.linspace(bottom, top, 6):
                    x = side * (p.neck_a + p.fat_mm + r_arm + 45 + (z - bottom) * 0.1)
                    y = self.yn + 10 + (z - bottom) * 0.1
                    knots.append((z, x, y, r_arm, r_arm * 1.1))
                self.arm_layers(knots)
                bone = [(k[0], k[1], k[2], 11.0, 11.0) for k in knots]
                self.arm_bones.append(bone)
                self.ellipse("bone_cortical", "cortical", bone)
                self.ellipse("bone_trabecular", "marrow", [(*b[:3], 6.5, 6.5) for b in bone])

    def arm_layers(self, knots: Sequence[Sequence[float]]) -> None:
        """Skin, fat and muscle of one arm (bone added by the caller)."""
        fat = self.p.fat_mm * 0.6
        self.ellipse(
            "fat", "skin", [(k[0], k[1], k[2], k[3] + 1.5, k[4] + 1.5) for k in knots], wobble=2.5
        )
        self.ellipse("fat", "fat", knots, wobble=2.5)
        muscle = [(k[0], k[1], k[2], k[3] - fat, k[4] - fat) for k in knots]
        self.ellipse("muscle", "muscle", muscle, wobble=1.8)

    def breasts(self) -> None:
        """Breasts lie on the pectoral muscles: fat with glandular tissue, in front."""
        p, rng = self.p, self.rng
        if p.sex != "F":
            return
        size = rng.uniform(20, 60) + p.fat_mm * 0.8
        for side in (-1.0, 1.0):
            knots = []
            for n, s in ((-10, 0.2), (-35, 0.75), (-60, 1.0), (-85, 0.85), (-110, 0.3)):
                z = self.z(n)
                x = side * self.A(z) * 0.55
                bx, by = self.outline.border(z, layer=1)
                front = by[bx * side > 0][
                    np.argmin(np.abs(bx[bx * side > 0] - x) + (by[bx * side > 0] > 0) * 1e3)
                ]
                b = size * 0.7 * s + 2
                knots.append((z, x, float(front) - b - 1.0, (size * 0.9 + 25) * s, b))
            self.ellipse("breast", "fat", knots, wobble=3.0)
            gland = [(k[0], k[1], k[2] + k[4] * 0.25, k[3] * 0.6, k[4] * 0.55) for k in knots]
            self.ellipse("breast", "breast_gland", gland, wobble=4.0)

    def fascia(
        self,
        side: float,
        theta0: float,
        theta1: float,
        depth: Callable[[float], float],
        levels: Sequence[float],
        pieces: int = 3,
        half: float = 0.45,
    ) -> None:
        """A fat plane between two muscles of the chest wall: a sheet at ``depth(z)`` mm
        outside the rib cage, from angle theta0 to theta1 (degrees; 90 = back), drawn as
        a few flat capsules that follow the wall's curve. The deformation field thickens
        it in places and pinches it off in others, as real fascial fat is."""
        ts = np.deg2rad(np.linspace(theta0, theta1, pieces + 1))
        for t0, t1 in itertools.pairwise(ts):
            kn = []
            for n in levels:
                z = self.z(n)
                pts = []
                for t in (t0, t1):
                    th = t if side > 0 else np.pi - t
                    a, b = self.A(z) + depth(z), self.B(z) + depth(z)
                    r = a * b / np.hypot(b * np.cos(th), a * np.sin(th))
                    pts.append((r * np.cos(th), r * np.sin(th)))
                kn.append((z, pts[0][0], pts[0][1], pts[1][0], pts[1][1], half))
            self.add(Capsule.make(LABEL["fat"], "fat", kn, wobble=0.8))

    def chest_wall(self) -> None:
        p, rng = self.p, self.rng
        # Fat planes that split the wall into muscles: behind the pectorals (front),
        # between latissimus and serratus (side), under the scapular muscles (back).
        levels = [n for n in (75.0, 50.0, 20.0, -20.0, -60.0, -100.0)]
        for side in (-1.0, 1.0):
            pec = rng.uniform(0.35, 0.6) * p.muscle_mm
            self.fascia(side, -80, -25, constant(pec), levels[:5])
            lat = rng.uniform(0.4, 0.7) * p.muscle_mm
            self.fascia(side, -15, 45, constant(lat), levels)
            back = rng.uniform(0.5, 0.9) * p.muscle_mm
            self.fascia(side, 55, 80, constant(back), levels, pieces=2)
        # Erector spinae beside the spinous processes, outlined by a thin fat plane.
        for side in (-1.0, 1.0):
            kn = []
            for n in np.arange(-330.0, 91.0, 15.0):
                z = self.z(n)
                size = self.paraspinal(z)
                # inside the muscle wall, whose back is flattened on the table
                back = float(self.outline.border(z, layer=1)[1].max())
                cy = min(self.spine_y(z) + 38 + size * 0.25, back - size - 2.0)
                kn.append((z, self.spine_x(z) + side * (size * 0.8 + 9), cy, size * 0.8, size))
            self.muscle_with_plane(kn, gap=2.5)

    def raised_arm_streaks(self, rng: Rng) -> None:
        """Arms raised beside the head: beam hardening between the two humeri."""
        if self.p.arms != "up" or len(self.arm_bones) != 2:
            return
        left, right = (np.asarray(k, dtype=float) for k in self.arm_bones)
        lo, hi = max(left[0, 0], right[0, 0]), min(left[-1, 0], right[-1, 0])

        def pair(z: float) -> tuple[float, float, float, float] | None:
            if not lo <= z <= hi:
                return None
            return (
                float(np.interp(z, left[:, 0], left[:, 1])),
                float(np.interp(z, left[:, 0], left[:, 2])),
                float(np.interp(z, right[:, 0], right[:, 1])),
                float(np.interp(z, right[:, 0], right[:, 2])),
            )

        self.dense_pairs.append((pair, rng.uniform(25, 60)))
