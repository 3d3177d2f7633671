"""A randomised adult body from the skull base to the upper abdomen, as analytic shapes.

Coordinates are patient millimetres, LPS: x to the patient's left, y to the back, z to
the head, with z = 0 at the carina. Everything that is not the physiology of contrast is
drawn from the patient's random generator: body build, fat, organ sizes and positions,
vessel calibres and courses, lung vessel trees, spine, ribs, calcium, teeth and metal.
The shapes are listed in painting order; each slice paints the ones its plane crosses.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ivcontrast.synth.confounder_anatomy import Extras, add_extras
from ivcontrast.synth.geometry import (
    Blob,
    Capsule,
    Deformation,
    DomeFill,
    Ellipse,
    Layer,
    Shape,
    Star,
    Tube,
    hull_radii,
)
from ivcontrast.synth.physiology import LABEL

Rng = np.random.Generator


@dataclass(frozen=True)
class Metal:
    """A metal object (filling, wire): the scanner adds streaks around it."""

    x: float
    y: float
    zmin: float
    zmax: float
    strength: float


@dataclass
class Patient:
    """The drawn build of one patient; the numbers also go into the manifest."""

    sex: str
    age: int
    height_scale: float
    cavity_a: float
    cavity_b: float
    neck_a: float
    neck_b: float
    muscle_mm: float
    fat_mm: float
    visceral_fat: float
    heart_scale: float
    aorta_radius: float
    arms: str  # "up" or "down"
    dental_metal: bool
    calcified: bool
    sternotomy: bool
    injection_side: str  # "right" or "left": which arm vein carries undiluted contrast
    vessel_calcium: str = "none"  # "none" | "mild" | "heavy": calcified vessel walls
    intracranial_calcium: tuple[str, ...] = ()  # choroid_plexus, pineal, falx, basal_ganglia

    def manifest(self) -> dict[str, object]:
        return {
            "sex": self.sex,
            "age": self.age,
            "height_scale": round(self.height_scale, 3),
            "chest_half_width_mm": round(self.cavity_a, 1),
            "chest_half_depth_mm": round(self.cavity_b, 1),
            "neck_half_width_mm": round(self.neck_a, 1),
            "muscle_mm": round(self.muscle_mm, 1),
            "fat_mm": round(self.fat_mm, 1),
            "visceral_fat": round(self.visceral_fat, 2),
            "heart_scale": round(self.heart_scale, 3),
            "aorta_radius_mm": round(self.aorta_radius, 1),
            "arms": self.arms,
            "dental_metal": self.dental_metal,
            "calcified_plaque": self.calcified,
            "sternotomy_wires": self.sternotomy,
            "injection_side": self.injection_side,
            "vessel_calcium": self.vessel_calcium,
            "intracranial_calcium": "+".join(self.intracranial_calcium) or "none",
        }


@dataclass
class Anatomy:
    """The shapes of one patient, with z extents for fast culling, and what the scanner
    needs to know (metal, dense bone pairs for beam hardening, the body outline), and
    the smooth field that makes the shapes' borders irregular."""

    patient: Patient
    shapes: list[Shape]
    metal: list[Metal]
    dense_pairs: list[tuple[Callable[[float], tuple[float, float, float, float] | None], float]]
    outline: Blob
    deformation: Deformation | None = None
    zmin: np.ndarray = field(init=False)
    zmax: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.zmin = np.array([s.zmin for s in self.shapes])
        self.zmax = np.array([s.zmax for s in self.shapes])

    def active(self, z: float) -> list[Shape]:
        idx = np.nonzero((self.zmin <= z) & (self.zmax >= z))[0]
        return [self.shapes[i] for i in idx]

    def body_extent(self, z: float) -> tuple[float, float, float, float]:
        """Centre and half sizes (x, y, half width, half depth) of the trunk's outline
        at z, in mm (arms not included)."""
        x, y = self.outline.border(z)
        return (
            float(x.max() + x.min()) / 2,
            float(y.max() + y.min()) / 2,
            float(x.max() - x.min()) / 2,
            float(y.max() - y.min()) / 2,
        )


# The body's landmarks, nominal z in mm for an average adult (scaled per patient).
Z_ORBIT_TOP = 280.0
Z_ORBIT_FLOOR = 238.0
Z_SKULL_BASE = 222.0
Z_PALATE = 207.0
Z_OCCLUSAL = 193.0
Z_MANDIBLE_LOW = 150.0
Z_HYOID = 140.0
Z_CRICOID = 112.0
Z_NOTCH = 55.0
Z_APEX = 72.0
Z_ARCH = 28.0
Z_DOME_R = -135.0
Z_DOME_L = -150.0
Z_TOP = 330.0
Z_BOTTOM = -330.0

# Vertebrae: name, nominal centre z, height (mm).
VERTEBRAE: tuple[tuple[str, float, float], ...] = (
    ("C2", 192.0, 18.0),
    ("C3", 172.0, 14.0),
    ("C4", 154.0, 14.0),
    ("C5", 136.0, 14.0),
    ("C6", 118.0, 14.0),
    ("C7", 100.0, 15.0),
    ("T1", 80.0, 17.0),
    ("T2", 58.0, 18.0),
    ("T3", 36.0, 19.0),
    ("T4", 14.0, 19.0),
    ("T5", -9.0, 20.0),
    ("T6", -33.0, 21.0),
    ("T7", -57.0, 21.0),
    ("T8", -82.0, 22.0),
    ("T9", -107.0, 22.0),
    ("T10", -133.0, 23.0),
    ("T11", -160.0, 24.0),
    ("T12", -188.0, 25.0),
    ("L1", -218.0, 26.0),
    ("L2", -250.0, 27.0),
    ("L3", -284.0, 27.0),
    ("L4", -318.0, 27.0),
)


def _pw(z: float, knots: list[tuple[float, float]]) -> float:
    """Piecewise-linear profile through (z, value) knots (clamped at the ends)."""
    zs, vs = zip(*sorted(knots), strict=True)
    return float(np.interp(z, zs, vs))


class _Builder:
    """Draws one patient and lays out its shapes. Methods add shapes in painting order."""

    def __init__(self, rng: Rng, arms: str, prone: bool, extras: Extras | None = None) -> None:
        self.rng = rng
        self.prone = prone
        self.extras = extras
        self.arm_bones: list[Sequence[Sequence[float]]] = []
        self.carotid_radii: list[float] = []
        self.shapes: list[Shape] = []
        self.metal: list[Metal] = []
        self.dense_pairs: list[
            tuple[Callable[[float], tuple[float, float, float, float] | None], float]
        ] = []
        u = rng.uniform
        sex = "F" if rng.random() < 0.5 else "M"
        age = int(rng.integers(22, 91))
        male = sex == "M"
        h = u(0.9, 1.1) * (1.03 if male else 0.97)
        obese = rng.random() < 0.3
        fat = u(15, 55) if obese else u(3, 22)
        self.p = Patient(
            sex=sex,
            age=age,
            height_scale=h,
            cavity_a=u(118, 150) * (1.04 if male else 0.95),
            cavity_b=u(78, 104) * (1.03 if male else 0.96),
            neck_a=u(46, 60) * (1.06 if male else 0.94),
            neck_b=u(44, 56) * (1.05 if male else 0.95),
            muscle_mm=u(8, 18) * (1.15 if male else 0.9),
            fat_mm=fat,
            visceral_fat=u(0.2, 1.0) if obese else u(0.0, 0.5),
            heart_scale=u(0.88, 1.18),
            aorta_radius=u(12.5, 15.0) + (age - 50) * 0.04,
            arms=arms,
            dental_metal=rng.random() < 0.45,
            calcified=rng.random() < float(np.clip((age - 35) / 45.0, 0.05, 0.9)),
            sternotomy=age > 55 and rng.random() < 0.06,
            injection_side="right" if rng.random() < 0.75 else "left",
        )
        self.h = h
        # Midline sway of the spine (scoliosis) and the kyphosis of the thoracic spine.
        self.sway = u(-6, 6)
        self.kyphosis = u(-8, 10)
        self.yn = u(20, 32)  # neck centre relative to the chest centre

    # --- profiles (arguments are real z; divide by h for the nominal landmark scale) --

    def z(self, nominal: float) -> float:
        return nominal * self.h

    def A(self, z: float) -> float:
        """Half width of the inner rib cage (thoracic cavity)."""
        n = z / self.h
        f = _pw(
            n,
            [
                (95, 0.22),
                (Z_APEX, 0.3),
                (60, 0.44),
                (45, 0.6),
                (30, 0.72),
                (10, 0.84),
                (-20, 0.93),
                (-60, 1.0),
                (-100, 1.03),
                (-150, 1.05),
                (-200, 1.03),
                (-260, 0.98),
                (-330, 0.95),
            ],
        )
        return f * self.p.cavity_a

    def B(self, z: float) -> float:
        n = z / self.h
        f = _pw(
            n,
            [
                (95, 0.42),
                (Z_APEX, 0.5),
                (60, 0.56),
                (45, 0.66),
                (30, 0.76),
                (10, 0.86),
                (-20, 0.94),
                (-60, 1.0),
                (-100, 1.03),
                (-150, 1.04),
                (-200, 1.0),
                (-260, 0.95),
                (-330, 0.92),
            ],
        )
        return f * self.p.cavity_b

    def spine_y(self, z: float) -> float:
        """y of the vertebral bodies' centres."""
        n = z / self.h
        chest = self.B(min(z, self.z(60))) - 38.0 + self.kyphosis * np.exp(-(((n - 20) / 60) ** 2))
        neck = self.yn - 0.05 * self.p.neck_b
        w = float(np.clip((n - 60) / 45.0, 0.0, 1.0))
        return (1 - w) * chest + w * neck

    def paraspinal(self, z: float) -> float:
        """Half size of the erector spinae muscles at z."""
        n = z / self.h
        neck = float(np.clip((n - 60) / 50.0, 0.0, 1.0))
        return (17.0 + self.p.muscle_mm * 0.5) * (1 - 0.3 * neck) * (1.25 if n < -180 else 1.0)

    def spine_x(self, z: float) -> float:
        return self.sway * np.sin(z / 260.0)

    def trachea_pos(self, z: float) -> tuple[float, float]:
        n = z / self.h
        chest_y = 0.1 * self.B(0.0) + 3.0
        neck_y = self.yn - 0.68 * self.p.neck_b
        w = float(np.clip((n - 20) / 80.0, 0.0, 1.0))
        return self.spine_x(z) * 0.5, (1 - w) * chest_y + w * neck_y

    # --- whole body -------------------------------------------------------------------

    def build(self) -> Anatomy:
        outline = self.outline = self.torso()
        self.arms()
        self.breasts()
        self.chest_wall()
        self.lungs()
        self.abdomen()
        self.mediastinum()
        self.rib_cage()
        self.spine()
        self.neck()
        self.head()
        plaques = len(self.shapes)
        self.calcium_and_metal()
        if self.extras is not None:
            add_extras(self, self.extras, slice(plaques, len(self.shapes)))
        # Drawn last, from its own generator: the shapes above keep their draws.
        deformation = Deformation(
            np.random.default_rng(int(self.rng.integers(2**63))),
            half_width=330.0,
            z_range=(Z_BOTTOM * 1.15 - 20.0, Z_TOP * 1.15 + 20.0),
        )
        return Anatomy(self.p, self.shapes, self.metal, self.dense_pairs, outline, deformation)

    def add(self, shape: Shape) -> Shape:
        self.shapes.append(shape)
        return shape

    def ellipse(
        self,
        label: str,
        tissue: str,
        knots: Sequence[Sequence[float]],
        angle: float = 0.0,
        wobble: float = 0.0,
    ) -> Ellipse:
        e = Ellipse.make(LABEL[label], tissue, knots, angle, wobble)
        self.add(e)
        return e

    def tube(
        self,
        label: str,
        tissue: str,
        points: Sequence[Sequence[float]],
        radii: object,
        wobble: float = 0.0,
    ) -> Tube:
        t = Tube.make(LABEL[label], tissue, points, radii, wobble)
        self.add(t)
        return t

    def vessel(
        self,
        label: str,
        tissue: str,
        points: Sequence[Sequence[float]],
        radii: object,
        wall: float = 0.0,
    ) -> None:
        """A vessel with an optional soft-tissue wall (visible against dense contrast)."""
        if wall > 0:
            r = np.asarray(radii, dtype=float) + wall
            self.tube("fat", "muscle", points, r)
        self.tube(label, tissue, points, radii)

    def torso(self) -> Blob:
        """Skin, subcutaneous fat and the muscle wall, from the head to the abdomen.

        Offsets from the thoracic cavity: a muscle wall thicker at the sides (latissimus,
        serratus) and in front of the upper chest (pectorals), a hump behind over the
        paraspinal muscles; fat distributed unevenly; the back flattened on the table.
        """
        p, rng = self.p, self.rng
        zs = np.arange(Z_BOTTOM, Z_TOP + 1, 10.0) * self.h
        params, fat, mus = [], [], []
        shoulder = rng.uniform(55, 85) if p.arms == "down" else rng.uniform(20, 40)
        f_ant = rng.uniform(0.7, 1.6)
        f_lat = rng.uniform(0.9, 1.6)
        f_post = rng.uniform(0.5, 1.0)
        groove = rng.uniform(3, 8)
        pect = rng.uniform(0.6, 1.6) * (1.2 if p.sex == "M" else 0.9)
        lat_m = rng.uniform(0.3, 1.0) * p.muscle_mm
        press = rng.uniform(0.6, 0.95)  # how much the back flattens on the table
        scap = rng.uniform(1.2, 2.2)  # muscles over the scapulae and the back
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
                top, bottom = self.z(20), self.z(-320)
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
                top, bottom = self.z(260), self.z(70)
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
        end = 0.97 - 0.012 * k if k <= 7 else {8: 0.8, 9: 0.72, 10: 0.64, 11: 0.48, 12: 0.36}[k]
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

    def muscle_with_plane(
        self, knots: Sequence[Sequence[float]], gap: float, wobble: float = 1.6
    ) -> None:
        """A muscle with a fat plane along part of its border, not a ring around it: the
        fat is the muscle shrunk a little and shifted by up to ``gap`` mm to one side, so
        it shows along a third of the border at most, and its border follows the
        deformation field less than the muscle's, so the plane thins out and vanishes;
        elsewhere muscle abuts muscle."""
        rng = self.rng
        ang = rng.uniform(0.0, 2.0 * np.pi)
        shift = gap * rng.uniform(0.6, 1.4)
        dx, dy = shift * np.cos(ang), shift * np.sin(ang)
        grow = -0.5 * shift
        fat = [(k[0], k[1] + dx, k[2] + dy, k[3] + grow, k[4] + grow) for k in knots]
        self.ellipse("fat", "fat", fat, wobble=0.6 * wobble)
        self.ellipse("muscle", "muscle", knots, wobble=wobble)

    def chest_wall(self) -> None:
        p, rng = self.p, self.rng
        # Fat planes that split the wall into muscles: behind the pectorals (front),
        # between latissimus and serratus (side), under the scapular muscles (back).
        levels = [n for n in (75.0, 50.0, 20.0, -20.0, -60.0, -100.0)]
        for side in (-1.0, 1.0):
            pec = rng.uniform(0.35, 0.6) * p.muscle_mm
            self.fascia(side, -80, -25, _constant(pec), levels[:5])
            lat = rng.uniform(0.4, 0.7) * p.muscle_mm
            self.fascia(side, -15, 45, _constant(lat), levels)
            back = rng.uniform(0.5, 0.9) * p.muscle_mm
            self.fascia(side, 55, 80, _constant(back), levels, pieces=2)
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

    def rib_cage(self) -> None:
        """Ribs, sternum, clavicles, scapulae and humeral heads: painted after the lungs
        and the mediastinum, which end where the bones begin."""
        p, rng = self.p, self.rng
        # Ribs: cortical shell, marrow; costal cartilage to the sternum.
        for k in range(1, 13):
            for side in (-1.0, 1.0):
                pts, cart = self.rib_path(k, side)
                rr = rng.uniform(3.8, 5.0) * (1.3 if k == 1 else 1.0)
                self.tube("bone_cortical", "cortical", pts, rr)
                self.tube("bone_trabecular", "marrow", pts, rr - 1.3)
                if cart:
                    self.tube("cartilage", "cartilage", cart, rr * 0.95)
        # Sternum: manubrium, body, xiphoid; cortical shell around marrow.
        st = []
        for n, a, b in (
            (60, 10, 5),
            (55, 26, 9),
            (25, 22, 8),
            (18, 15, 7),
            (-60, 16, 7),
            (-110, 13, 6),
            (-125, 6, 4),
            (-135, 0.1, 0.1),
        ):
            z = self.z(n)
            st.append((z, 0.0, -self.B(z) - b - 2.0, a, b))
        self.ellipse("bone_cortical", "cortical", st)
        self.ellipse(
            "bone_trabecular",
            "trabecular",
            [(k[0], k[1], k[2], k[3] - 1.6, k[4] - 1.6) for k in st],
        )
        if p.sternotomy:
            for level in (30.0, 0.0, -30.0, -60.0, -90.0):
                z = self.z(level)
                y = -self.B(z) - 9.0
                self.tube("metal", "metal", [(-9, y, z), (9, y, z + 1.0)], 0.9)
                self.metal.append(Metal(0.0, y, z - 1.0, z + 2.0, 0.6))
        # Clavicles, scapulae and humeral heads.
        for side in (-1.0, 1.0):
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
            for n in (78, 60, 30, 0, -40, -75):
                z = self.z(n)
                A, B = self.A(z), self.B(z)
                med = (
                    side * A * 0.45,
                    B + p.muscle_mm * 0.4,
                )
                latp = (side * (A * 0.92 + 6), B * 0.45 + 8)
                r = 2.5 if n < 55 else 4.5
                blade.append((z, med[0], med[1], latp[0], latp[1], r if n > -70 else 0.3))
            self.add(Capsule.make(LABEL["bone_cortical"], "cortical", blade))
            zg = self.z(62)
            xg = side * (self.A(zg) + 18)
            glenoid = [
                (self.z(45), xg, 0.3 * self.B(zg), 0.1, 0.1),
                (self.z(52), xg, 0.3 * self.B(zg), 8, 12),
                (self.z(70), xg, 0.3 * self.B(zg), 9, 13),
                (self.z(76), xg, 0.3 * self.B(zg), 0.1, 0.1),
            ]
            self.ellipse("bone_cortical", "cortical", glenoid)
            if p.arms == "down":
                xh = xg + side * 24
                head = [
                    (self.z(38), xh, 0.25 * self.B(zg), 12, 12),
                    (self.z(50), xh, 0.25 * self.B(zg), 22, 22),
                    (self.z(68), xh, 0.25 * self.B(zg), 22, 22),
                    (self.z(80), xh, 0.25 * self.B(zg), 8, 8),
                ]
                self.ellipse("bone_cortical", "cortical", head)
                self.ellipse(
                    "bone_trabecular",
                    "trabecular",
                    [(k[0], k[1], k[2], k[3] - 2, k[4] - 2) for k in head],
                )

                def pair(
                    z: float, xh: float = abs(xh), yh: float = 0.25 * self.B(zg)
                ) -> tuple[float, float, float, float] | None:
                    if not self.z(42) <= z <= self.z(76):
                        return None
                    return (-xh, yh, xh, yh)

                if side > 0:
                    self.dense_pairs.append((pair, rng.uniform(25, 60)))

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
        dirs = [
            (0.35 * side, 0.1, 1.0),
            (0.5 * side, 0.7, 0.6),
            (0.5 * side, -0.8, 0.5),
            (1.0 * side, 0.1, 0.1),
            (0.6 * side, -0.6, -0.4),
            (0.4 * side, 0.6, -1.0),
            (0.8 * side, 0.2, -0.9),
            (0.6 * side, -0.5, -0.8),
        ]
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
        samples = _tube_samples(tubes)
        for n in np.arange(-170.0, Z_APEX + 6.0, 5.0):
            z = self.z(n)
            circles = _cuts(samples, z)
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

    def neck(self) -> None:
        p, rng = self.p, self.rng
        na, nb, yn = p.neck_a, p.neck_b, self.yn
        # Deep neck muscles, each outlined by a thin fat plane: splenius/semispinalis
        # behind, levator scapulae, scalenes beside the spine, longus colli in front of
        # it; fat of the posterior triangle between the sternocleidomastoid and trapezius.
        zs = [self.z(n) for n in (70.0, 100.0, 130.0, 160.0, 190.0)]
        for side in (-1.0, 1.0):
            groups = []
            for z in zs:
                ys, xs = self.spine_y(z), self.spine_x(z)
                top = float(np.clip((z / self.h - 60) / 40.0, 0.0, 1.0))  # fade in above the chest
                groups.append(
                    (
                        z,
                        [
                            (xs + side * 13, ys + 38, 12.0, 15.0 * top + 0.5),  # semispinalis
                            (xs + side * 30, ys + 44, 13.0, 12.0 * top + 0.5),  # splenius
                            (xs + side * 36, ys + 18, 9.0, 11.0 * top + 0.5),  # levator scapulae
                            (xs + side * 24, ys - 2, 7.0, 9.0 * top + 0.5),  # scalenes
                            (xs + side * 7, ys - 13, 5.0, 4.0 * top + 0.5),  # longus colli
                        ],
                    )
                )
            for k in range(5):
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
        # Strap muscles in front of the thyroid and larynx.
        for side in (-1.0, 1.0):
            kn = []
            for n in (70.0, 100.0, 130.0, 150.0):
                z = self.z(n)
                tx, ty0 = self.trachea_pos(z)
                kn.append((z, tx + side * 11, ty0 - 17, 9.0, 2.8))
            self.ellipse("muscle", "muscle", kn)
        # Sternocleidomastoid muscles, anterolateral, from the sternum to the mastoid.
        for side in (-1.0, 1.0):
            pts = [
                (side * 16.0, -self.B(self.z(55)) - 5, self.z(55)),
                (side * na * 0.62, yn - nb * 0.45, self.z(100)),
                (side * na * 0.8, yn - nb * 0.2, self.z(150)),
                (side * na * 0.85, yn + nb * 0.1, self.z(210)),
            ]
            self.tube("muscle", "fat", pts, [8.0, 9.0, 10.0, 9.0])
            self.tube("muscle", "muscle", pts, [6.0, 7.5, 8.0, 7.0])
        # Thyroid lobes beside the trachea, isthmus in front; dense even without contrast.
        ty = lambda z: self.trachea_pos(z)[1]  # noqa: E731
        size = rng.uniform(0.8, 1.3)
        for side in (-1.0, 1.0):
            kn = []
            for n, s in ((75, 0.1), (82, 0.8), (100, 1.0), (118, 0.7), (126, 0.1)):
                z = self.z(n)
                kn.append((z, side * 16.0 * size, ty(z) + 2.0, 9.0 * s * size, 13.0 * s * size))
            self.ellipse("thyroid", "thyroid", kn, angle=side * 0.3)
        self.ellipse(
            "thyroid",
            "thyroid",
            [
                (self.z(90), 0.0, ty(self.z(95)) - 11, 0.5, 0.5),
                (self.z(95), 0.0, ty(self.z(95)) - 11, 10.0, 3.5),
                (self.z(102), 0.0, ty(self.z(95)) - 11, 0.5, 0.5),
            ],
        )
        # Larynx: cartilage (partly calcified with age), mucosa and the air column.
        calc = "cartilage_calcified" if p.age > 45 and rng.random() < 0.7 else "cartilage"
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
        for n, a, b in (
            (100, 8, 7),
            (115, 7, 6),
            (125, 6, 8),
            (135, 9, 7),
            (145, 12, 7),
            (165, 14, 8),
            (185, 13, 7),
            (200, 11, 6),
            (215, 0.5, 0.5),
        ):
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
        # Carotid arteries (bifurcating), jugular veins, vertebral arteries.
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
        # Lymph nodes along the jugular chain.
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
        # Floor of the mouth: tongue, submandibular glands; mandible with the teeth.
        self.ellipse(
            "muscle",
            "muscle",
            [
                (self.z(150), 0.0, yn - nb * 0.4, 10, 10),
                (self.z(165), 0.0, yn - nb * 0.55, 28, 22),
                (self.z(190), 0.0, yn - nb * 0.65, 26, 24),
                (self.z(200), 0.0, yn - nb * 0.7, 6, 6),
            ],
        )
        for side in (-1.0, 1.0):
            sx = side * na * 0.72
            self.ellipse(
                "salivary_gland",
                "salivary",
                [
                    (self.z(140), sx, yn - nb * 0.35, 0.5, 0.5),
                    (self.z(152), sx, yn - nb * 0.4, 14, 10),
                    (self.z(165), sx, yn - nb * 0.45, 12, 9),
                    (self.z(175), sx, yn - nb * 0.45, 0.5, 0.5),
                ],
            )
            self.ellipse(
                "salivary_gland",
                "parotid",
                [
                    (self.z(175), side * na * 0.9, yn + 5, 0.5, 0.5),
                    (self.z(195), side * na * 0.95, yn + 2, 13, 18),
                    (self.z(225), side * na * 0.95, yn, 12, 15),
                    (self.z(235), side * na * 0.95, yn, 0.5, 0.5),
                ],
            )
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

    def head(self) -> None:
        """Skull base, face and the lowest brain: sinuses, orbits, petrous bones."""
        p, rng = self.p, self.rng
        yn = self.yn
        hy = yn - 10
        ha = p.neck_a + 20
        hb = p.neck_b + 38

        def kn(ns: list[tuple[float, float, float, float, float]]) -> list[tuple[float, ...]]:
            return [(self.z(n), x, y, a, b) for n, x, y, a, b in ns]

        # Skull vault (cortical), brain inside; posterior fossa.
        self.ellipse(
            "bone_cortical",
            "cortical",
            kn(
                [
                    (205, 0, hy + 30, 0.5, 0.5),
                    (215, 0, hy + 30, ha * 0.7, hb * 0.5),
                    (240, 0, hy + 24, ha * 0.92, hb * 0.68),
                    (270, 0, hy + 16, ha * 0.97, hb * 0.78),
                    (300, 0, hy + 5, ha, hb * 0.92),
                    (330, 0, hy + 5, ha * 0.95, hb * 0.9),
                ]
            ),
        )
        self.ellipse(
            "brain",
            "brain",
            kn(
                [
                    (208, 0, hy + 30, 0.5, 0.5),
                    (216, 0, hy + 30, ha * 0.7 - 5, hb * 0.5 - 5),
                    (240, 0, hy + 24, ha * 0.92 - 5.5, hb * 0.68 - 5.5),
                    (270, 0, hy + 16, ha * 0.97 - 6, hb * 0.78 - 6),
                    (300, 0, hy + 5, ha - 6, hb * 0.92 - 6),
                    (330, 0, hy + 5, ha * 0.95 - 6, hb * 0.9 - 6),
                ]
            ),
        )
        # Petrous bones, dense and oblique (beam-hardening bands run between them).
        for side in (-1.0, 1.0):
            kn_p = [
                (self.z(220), side * 36.0, hy + 12, 0.5, 0.5),
                (self.z(224), side * 36.0, hy + 12, 17.0, 6.0),
                (self.z(234), side * 36.0, hy + 12, 19.0, 7.0),
                (self.z(238), side * 36.0, hy + 12, 0.5, 0.5),
            ]
            self.ellipse("bone_cortical", "cortical", kn_p, angle=side * 0.75)

        def petrous(z: float) -> tuple[float, float, float, float] | None:
            if not self.z(222) <= z <= self.z(236):
                return None
            return (-40.0, hy + 2, 40.0, hy + 2)

        self.dense_pairs.append((petrous, rng.uniform(30, 70)))
        self.add(
            Capsule.make(
                LABEL["bone_cortical"],
                "cortical",
                [
                    (self.z(200), 0.0, hy + 2, 0.0, hy - 10, 5.0),
                    (self.z(235), 0.0, hy - 2, 0.0, hy - 18, 6.0),
                ],
            )
        )
        # Maxillary sinuses with bony walls, nasal cavity with septum, sphenoid sinus.
        for side in (-1.0, 1.0):
            sx, sy = side * 24.0, hy - hb * 0.55
            walls = kn(
                [
                    (208, sx, sy, 0.5, 0.5),
                    (214, sx, sy, 16, 17),
                    (236, sx, sy, 18, 19),
                    (246, sx, sy, 0.5, 0.5),
                ]
            )
            self.ellipse("bone_cortical", "cortical", walls)
            self.ellipse(
                "airway",
                "air",
                [(k[0], k[1], k[2], max(k[3] - 2.0, 0.3), max(k[4] - 2.0, 0.3)) for k in walls],
            )
        nasal = kn(
            [
                (206, 0, hy - hb * 0.62, 0.5, 0.5),
                (212, 0, hy - hb * 0.6, 11, 22),
                (245, 0, hy - hb * 0.62, 10, 20),
                (255, 0, hy - hb * 0.65, 0.5, 0.5),
            ]
        )
        self.ellipse(
            "mucosa", "mucosa", [(k[0], k[1], k[2], k[3] + 2.5, k[4] + 2.5) for k in nasal]
        )
        self.ellipse("airway", "air", nasal)
        self.add(
            Capsule.make(
                LABEL["bone_cortical"],
                "cortical",
                [
                    (self.z(206), 0.0, hy - hb * 0.4, 0.0, hy - hb * 0.8, 1.0),
                    (self.z(255), 0.0, hy - hb * 0.4, 0.0, hy - hb * 0.8, 1.0),
                ],
            )
        )
        for side in (-1.0, 1.0):
            self.ellipse(
                "mucosa",
                "mucosa",
                kn(
                    [
                        (212, side * 7.0, hy - hb * 0.6, 0.5, 0.5),
                        (222, side * 7.0, hy - hb * 0.6, 3.5, 12),
                        (232, side * 7.0, hy - hb * 0.6, 0.5, 0.5),
                    ]
                ),
            )
        self.ellipse(
            "airway",
            "air",
            kn(
                [
                    (226, 0, hy - 22, 0.5, 0.5),
                    (232, 0, hy - 22, 12, 10),
                    (244, 0, hy - 24, 0.5, 0.5),
                ]
            ),
        )
        # Orbits: fat cone, globe, lens; lateral orbital walls.
        for side in (-1.0, 1.0):
            ox, oy = side * 31.0, hy - hb * 0.7
            self.ellipse(
                "bone_cortical",
                "cortical",
                kn(
                    [
                        (Z_ORBIT_FLOOR - 2, ox, oy + 10, 0.5, 0.5),
                        (Z_ORBIT_FLOOR + 4, ox, oy + 10, 19, 24),
                        (Z_ORBIT_TOP - 4, ox, oy + 10, 19, 24),
                        (Z_ORBIT_TOP + 2, ox, oy + 10, 0.5, 0.5),
                    ]
                ),
            )
            self.ellipse(
                "fat",
                "fat",
                kn(
                    [
                        (Z_ORBIT_FLOOR, ox, oy + 10, 0.5, 0.5),
                        (Z_ORBIT_FLOOR + 5, ox, oy + 10, 17.8, 22.8),
                        (Z_ORBIT_TOP - 5, ox, oy + 10, 17.8, 22.8),
                        (Z_ORBIT_TOP, ox, oy + 10, 0.5, 0.5),
                    ]
                ),
            )
            gz = (Z_ORBIT_FLOOR + Z_ORBIT_TOP) / 2
            self.ellipse(
                "globe",
                "globe",
                kn(
                    [
                        (gz - 12, ox, oy, 0.5, 0.5),
                        (gz - 8, ox, oy, 9, 9),
                        (gz, ox, oy, 12, 12),
                        (gz + 8, ox, oy, 9, 9),
                        (gz + 12, ox, oy, 0.5, 0.5),
                    ]
                ),
            )
            self.ellipse(
                "lens",
                "lens",
                kn(
                    [
                        (gz - 4, ox, oy - 9, 0.5, 0.5),
                        (gz, ox, oy - 9, 4.5, 2),
                        (gz + 4, ox, oy - 9, 0.5, 0.5),
                    ]
                ),
            )
        # Dural venous sinuses (transverse and sigmoid) behind the petrous bones.
        for side in (-1.0, 1.0):
            pts = [
                (side * 30.0, yn + p.neck_b * 0.35, self.z(232)),
                (side * 42.0, hy + 40, self.z(240)),
                (side * 20.0, hy + hb * 0.8, self.z(248)),
                (0.0, hy + hb * 0.88, self.z(252)),
            ]
            self.tube("dural_sinus", "blood_jugular", pts, [5.0, 4.5, 4.0, 4.0])

    def calcium_and_metal(self) -> None:
        """Calcified plaque in the aorta, coronaries and carotid bulbs; in either class."""
        p, rng = self.p, self.rng
        if not p.calcified:
            return
        pts = np.asarray(self.aorta_pts)
        rad = np.asarray(self.aorta_r)
        for _ in range(int(rng.integers(2, 12))):
            i = int(rng.integers(1, len(pts) - 1))
            f = rng.random()
            c = pts[i] * (1 - f) + pts[i + 1] * f
            r = rad[i] * (1 - f) + rad[i + 1] * f
            ang = rng.uniform(0, 2 * np.pi)
            x, y = c[0] + r * np.cos(ang), c[1] + r * np.sin(ang)
            size = rng.uniform(1.0, 2.8)
            self.tube(
                "calcification",
                "calcium",
                [
                    (x, y, c[2] - size * 1.5),
                    (x + np.cos(ang + 1.6) * size, y + np.sin(ang + 1.6) * size, c[2] + size * 1.5),
                ],
                size,
            )
        for x, y, z in self.coronary_pts:
            if rng.random() < 0.6:
                self.tube(
                    "calcification",
                    "calcium",
                    [(x, y, z - 2), (x, y, z + 2)],
                    rng.uniform(1.0, 2.2),
                )
        for x, y, z in self.carotid_bulbs:
            if rng.random() < 0.5:
                self.tube(
                    "calcification",
                    "calcium",
                    [(x + 3, y + 2, z - 3), (x + 3, y + 3, z + 6)],
                    rng.uniform(0.8, 1.8),
                )


def _constant(value: float) -> Callable[[float], float]:
    """A depth function that is the same at every z."""
    return lambda _z: value


def _tube_samples(
    tubes: Sequence[tuple[Sequence[Sequence[float]], Sequence[float]]],
) -> np.ndarray:
    """Points (x, y, z, r) every 2 mm along polyline tubes."""
    out = []
    for points, radii in tubes:
        p = np.asarray(points, dtype=float)
        r = np.asarray(radii, dtype=float)
        for i in range(len(p) - 1):
            length = float(np.linalg.norm(p[i + 1] - p[i]))
            f = np.linspace(0.0, 1.0, max(2, int(length / 2.0) + 1))[:, None]
            q = p[i] * (1 - f) + p[i + 1] * f
            out.append(np.column_stack([q, r[i] * (1 - f[:, 0]) + r[i + 1] * f[:, 0]]))
    return np.concatenate(out)


def _cuts(samples: np.ndarray, z: float) -> list[tuple[float, float, float]]:
    """Cross-sections (x, y, r) of sampled tubes with the plane ``z``: a tube lying in
    the plane gives a row of circles."""
    dz = np.abs(samples[:, 2] - z)
    hit = samples[dz < samples[:, 3]]
    r = np.sqrt(hit[:, 3] ** 2 - (hit[:, 2] - z) ** 2)
    return list(zip(hit[:, 0].tolist(), hit[:, 1].tolist(), r.tolist(), strict=True))


def build_anatomy(
    rng: Rng, arms: str = "down", prone: bool = False, extras: Extras | None = None
) -> Anatomy:
    """One random patient; the same generator state always gives the same patient.

    ``arms`` ("up" or "down") and ``prone`` are how the patient lay on the table for
    this series: they move the arms and flatten the side lying on the table.
    ``extras``: the confounders (calcified vessel walls, the brain's ventricles and
    calcifications), forced or drawn from their own seed; ``None`` leaves them out.
    """
    return _Builder(rng, arms, prone, extras).build()
