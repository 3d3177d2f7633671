"""What every region's builder shares: the patient, landmarks, body profiles and the
primitives that add shapes.

Coordinates are patient millimetres, LPS: x to the patient's left, y to the back, z to
the head, with z = 0 at the carina. Nominal z values (landmarks, table rows) are for an
average adult; ``z(nominal)`` scales them by the patient's height.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ivcontrast.synth.deformation import Deformation
from ivcontrast.synth.geometry import Ellipse, Shape, Tube
from ivcontrast.synth.outlines import Blob
from ivcontrast.synth.physiology import LABEL

Rng = np.random.Generator
DensePair = tuple[Callable[[float], tuple[float, float, float, float] | None], float]
Segment = tuple[np.ndarray, np.ndarray, float, float, int]  # p0, p1, r0, r1, generation


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
    dense_pairs: list[DensePair]
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

# The thoracic cavity's half width and half depth as fractions of the patient's
# (nominal z, fraction): narrow at the apex, widest above the diaphragm.
CAVITY_WIDTH: tuple[tuple[float, float], ...] = (
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
)
CAVITY_DEPTH: tuple[tuple[float, float], ...] = (
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
)

# Patient build: uniform range, then a factor for men and for women, in drawing order.
BUILD: tuple[tuple[str, tuple[float, float], float, float], ...] = (
    ("cavity_a", (118, 150), 1.04, 0.95),
    ("cavity_b", (78, 104), 1.03, 0.96),
    ("neck_a", (46, 60), 1.06, 0.94),
    ("neck_b", (44, 56), 1.05, 0.95),
    ("muscle_mm", (8, 18), 1.15, 0.9),
)


def _pw(z: float, knots: Sequence[tuple[float, float]]) -> float:
    """Piecewise-linear profile through (z, value) knots (clamped at the ends)."""
    zs, vs = zip(*sorted(knots), strict=True)
    return float(np.interp(z, zs, vs))


def draw_patient(rng: Rng, arms: str) -> Patient:
    """Sex, age and build, drawn in a fixed order (the rest of the body depends on it)."""
    u = rng.uniform
    sex = "F" if rng.random() < 0.5 else "M"
    age = int(rng.integers(22, 91))
    male = sex == "M"
    h = u(0.9, 1.1) * (1.03 if male else 0.97)
    obese = rng.random() < 0.3
    fat = u(15, 55) if obese else u(3, 22)
    build = {name: u(*rg) * (m if male else f) for name, rg, m, f in BUILD}
    return Patient(
        sex=sex,
        age=age,
        height_scale=h,
        cavity_a=build["cavity_a"],
        cavity_b=build["cavity_b"],
        neck_a=build["neck_a"],
        neck_b=build["neck_b"],
        muscle_mm=build["muscle_mm"],
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


class BuilderBase:
    """One patient being laid out: its draws, profiles and the shape primitives.

    Region mixins add their shapes in painting order; what one region leaves for
    another (the aorta's course for the neck and the calcium, the outline for the
    spine) is declared here.
    """

    outline: Blob
    rng_apex: dict[float, float]
    aorta_pts: list[tuple[float, float, float]]
    aorta_r: list[float]
    coronary_pts: list[tuple[float, float, float]]
    carotid_bulbs: list[tuple[float, float, float]]
    arch_branches: dict[str, list[tuple[float, float, float]]]
    oesophagus: list[tuple[float, float, float, float, float]]

    def __init__(self, rng: Rng, arms: str, prone: bool) -> None:
        self.rng = rng
        self.prone = prone
        self.arm_bones: list[Sequence[Sequence[float]]] = []
        self.carotid_radii: list[float] = []
        self.shapes: list[Shape] = []
        self.metal: list[Metal] = []
        self.dense_pairs: list[DensePair] = []
        self.p = draw_patient(rng, arms)
        self.h = self.p.height_scale
        u = rng.uniform
        # Midline sway of the spine (scoliosis) and the kyphosis of the thoracic spine.
        self.sway = u(-6, 6)
        self.kyphosis = u(-8, 10)
        self.yn = u(20, 32)  # neck centre relative to the chest centre

    # --- profiles (arguments are real z; divide by h for the nominal landmark scale) --

    def z(self, nominal: float) -> float:
        return nominal * self.h

    def A(self, z: float) -> float:
        """Half width of the inner rib cage (thoracic cavity)."""
        return _pw(z / self.h, CAVITY_WIDTH) * self.p.cavity_a

    def B(self, z: float) -> float:
        """Half depth of the inner rib cage."""
        return _pw(z / self.h, CAVITY_DEPTH) * self.p.cavity_b

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

    # --- primitives -------------------------------------------------------------------

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


def constant(value: float) -> Callable[[float], float]:
    """A depth function that is the same at every z."""
    return lambda _z: value


def tube_samples(
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


def cuts(samples: np.ndarray, z: float) -> list[tuple[float, float, float]]:
    """Cross-sections (x, y, r) of sampled tubes with the plane ``z``: a tube lying in
    the plane gives a row of circles."""
    dz = np.abs(samples[:, 2] - z)
    hit = samples[dz < samples[:, 3]]
    r = np.sqrt(hit[:, 3] ** 2 - (hit[:, 2] - z) ** 2)
    return list(zip(hit[:, 0].tolist(), hit[:, 1].tolist(), r.tolist(), strict=True))
