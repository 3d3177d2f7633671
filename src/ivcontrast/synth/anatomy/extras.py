"""Shapes of the confounders a patient carries, added after the rest of the body.

Calcified vessel walls (aortic and carotid rims: bright crescents on the wall, the blood
inside unchanged), the brain above the orbits (lateral and third ventricles, the
superior sagittal sinus) with its physiological calcifications (choroid plexus,
pineal, falx, basal ganglia), and the streaks between arms raised beside the head.

Everything here draws from its own generators (one per structure), never from the
body's: a patient with or without a confounder has the same body, organs and vessels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ivcontrast.synth.confounders import draw_intracranial, vessel_calcium_grade
from ivcontrast.synth.geometry import Capsule
from ivcontrast.synth.physiology import LABEL

if TYPE_CHECKING:
    from ivcontrast.synth.anatomy.base import BuilderBase

Rng = np.random.Generator

# Wall rims by grade: (count low, high), length mm, arc span rad, thickness mm.
RIMS: dict[str, dict[str, tuple[float, float]]] = {
    "mild": {"count": (1, 3), "length": (6, 20), "span": (0.4, 1.2), "thick": (0.7, 1.3)},
    "heavy": {"count": (4, 10), "length": (10, 50), "span": (0.8, 3.0), "thick": (0.9, 2.0)},
}
CAROTID_RIM_RATE = {"mild": 0.4, "heavy": 0.9}  # per carotid bulb

# Brain landmarks above the orbits, nominal z (mm above the carina).
Z_THIRD_VENTRICLE = (270.0, 296.0)
Z_VENTRICLE_BODY = (282.0, 326.0)
Z_ATRIUM = (286.0, 314.0)
Z_CHOROID = 298.0
Z_PINEAL = 291.0
Z_BASAL_GANGLIA = 292.0
Z_FALX = (296.0, 315.0)  # where a calcified stretch of falx starts
# The brain's centre y relative to the head's centre (knots as head() draws the brain).
BRAIN_CENTRE: tuple[tuple[float, float], ...] = ((240.0, 24.0), (270.0, 16.0), (300.0, 5.0))


@dataclass(frozen=True)
class Extras:
    """What the caller forced (``None`` = drawn) and the seed of the draws."""

    vessel_calcium: str | None = None
    intracranial_calcium: tuple[str, ...] | None = None
    seed: int = 0

    def rng(self, part: int) -> Rng:
        return np.random.default_rng([self.seed, 0xCA, part])


def add_extras(b: BuilderBase, extras: Extras, plaques: slice) -> None:
    """Resolve and add the patient's confounders; ``plaques`` are the shapes of the
    body's own calcified plaques (removed when the vessels are forced clean)."""
    p = b.p
    rng = extras.rng(0)
    grade = vessel_calcium_grade(rng, p.age, p.calcified)
    intracranial = draw_intracranial(rng, p.age)
    if extras.vessel_calcium is not None:
        grade = extras.vessel_calcium
    if extras.intracranial_calcium is not None:
        intracranial = tuple(extras.intracranial_calcium)
    if grade == "none":
        del b.shapes[plaques]
    elif not p.calcified:
        _spot_plaques(b, extras.rng(1))
    p.calcified = grade != "none"
    p.vessel_calcium = grade
    p.intracranial_calcium = intracranial
    if grade != "none":
        _vessel_rims(b, grade, extras.rng(2))
    _brain(b)
    _intracranial(b, intracranial, extras.rng(3))
    _raised_arm_streaks(b, extras.rng(4))


# --- vessel walls ------------------------------------------------------------------


def _spot_plaques(b: BuilderBase, rng: Rng) -> None:
    """Small plaques on the aortic wall (as the body draws them for calcified patients)."""
    pts, rad = np.asarray(b.aorta_pts), np.asarray(b.aorta_r)
    for _ in range(int(rng.integers(2, 8))):
        i = int(rng.integers(1, len(pts) - 1))
        f = rng.random()
        c, r = pts[i] * (1 - f) + pts[i + 1] * f, rad[i] * (1 - f) + rad[i + 1] * f
        ang = rng.uniform(0, 2 * np.pi)
        x, y, size = c[0] + r * np.cos(ang), c[1] + r * np.sin(ang), rng.uniform(1.0, 2.5)
        b.tube("calcification", "calcium_wall", [(x, y, c[2] - size), (x, y, c[2] + size)], size)


def _resample(
    points: Sequence[Sequence[float]], radii: Sequence[float], step: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """A polyline and its radii sampled every ``step`` mm."""
    p = np.asarray(points, dtype=float)
    r = np.asarray(radii, dtype=float)
    length = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
    s = np.arange(0.0, length[-1], step)
    q = np.column_stack([np.interp(s, length, p[:, i]) for i in range(3)])
    return q, np.interp(s, length, r)


def _rim(b: BuilderBase, rng: Rng, centre: np.ndarray, radius: np.ndarray, grade: str) -> None:
    """One calcified crescent: beads along the vessel wall over an arc and a length."""
    spec = RIMS[grade]
    n = max(2, int(rng.uniform(*spec["length"]) / 3.0) + 1)
    if len(centre) <= n:
        return
    i0 = int(rng.integers(0, len(centre) - n))
    seg, r = centre[i0 : i0 + n], radius[i0 : i0 + n]
    t = seg[-1] - seg[0]
    t = t / (np.linalg.norm(t) + 1e-9)
    ref = np.array([0.0, 0.0, 1.0]) if abs(t[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(t, ref)
    u /= np.linalg.norm(u) + 1e-9
    v = np.cross(t, u)
    span, a0 = rng.uniform(*spec["span"]), rng.uniform(0, 2 * np.pi)
    th = rng.uniform(*spec["thick"])
    beads = max(2, int(span * float(r.mean()) / (1.1 * th)) + 1)
    for a in np.linspace(a0, a0 + span, beads):
        off = np.cos(a) * u + np.sin(a) * v
        # on the wall: mostly outside the lumen, which keeps its blood HU
        b.tube("calcification", "calcium_wall", seg + (r + 0.5 * th)[:, None] * off, th)


def _vessel_rims(b: BuilderBase, grade: str, rng: Rng) -> None:
    centre, radius = _resample(b.aorta_pts, b.aorta_r)
    lo, hi = RIMS[grade]["count"]
    for _ in range(int(rng.integers(int(lo), int(hi) + 1))):
        _rim(b, rng, centre, radius, grade)
    for (cx, cy, bif), r in zip(b.carotid_bulbs, b.carotid_radii, strict=True):
        if rng.random() < CAROTID_RIM_RATE[grade]:
            side = 1.0 if cx > 0 else -1.0
            pts = [(cx, cy, bif - 24), (cx, cy, bif), (cx + side * 2, cy + 4, bif + 12)]
            c, rr = _resample(pts, [r, r * 1.1, r * 0.9], step=2.0)
            _rim(b, rng, c, rr, grade)


# --- brain -----------------------------------------------------------------------


def _head(b: BuilderBase) -> tuple[float, float, float]:
    """The head's centre y and half sizes, as head() lays out the skull."""
    return b.yn - 10.0, b.p.neck_a + 20.0, b.p.neck_b + 38.0


def _brain_y(b: BuilderBase, n: float) -> float:
    hy = _head(b)[0]
    zs, ys = zip(*BRAIN_CENTRE, strict=True)
    return hy + float(np.interp(n, zs, ys))


def _blob(
    b: BuilderBase, label: str, tissue: str, n: float, x: float, y: float, r: tuple[float, float]
) -> None:
    """A small ellipsoid centred at nominal z ``n``."""
    a, c = r
    half = max(a, c) / b.h
    b.ellipse(
        label,
        tissue,
        [(b.z(n - half), x, y, 0.3, 0.3), (b.z(n), x, y, a, c), (b.z(n + half), x, y, 0.3, 0.3)],
    )


def _brain(b: BuilderBase) -> None:
    """Lateral and third ventricles (larger with age) and the superior sagittal sinus."""
    p = b.p
    hy, _, hb = _head(b)
    s = 0.85 + 0.5 * max(p.age - 30, 0) / 60.0
    for side in (-1.0, 1.0):
        lo, hi = Z_VENTRICLE_BODY
        body = [
            (lo, 0.3, 0.3),
            (lo + 6, 3.0 * s, 18.0),
            (300.0, 5.0 * s, 30.0),
            (hi - 8, 5.0 * s, 28.0),
            (hi, 0.3, 0.3),
        ]
        b.ellipse(
            "ventricle",
            "csf",
            [(b.z(n), side * 9.0 * s, _brain_y(b, n), a, c) for n, a, c in body],
            angle=side * 0.12,
        )
        lo, hi = Z_ATRIUM
        atrium = [(lo, 0.3, 0.3), (lo + 6, 6.0 * s, 8.0), (hi - 8, 7.0 * s, 9.0), (hi, 0.3, 0.3)]
        b.ellipse(
            "ventricle",
            "csf",
            [(b.z(n), side * 22.0 * s**0.5, _brain_y(b, n) + 26.0, a, c) for n, a, c in atrium],
        )
    lo, hi = Z_THIRD_VENTRICLE
    third = [(lo, 0.3, 0.3), (lo + 6, 2.0 * s, 9.0), (hi - 6, 2.5 * s, 10.0), (hi, 0.3, 0.3)]
    b.ellipse("ventricle", "csf", [(b.z(n), 0.0, _brain_y(b, n) - 2.0, a, c) for n, a, c in third])
    back = [(0.0, hy + hb * 0.88, b.z(252))]
    back += [(0.0, _brain_y(b, n) + hb * 0.9 - 8.0, b.z(n)) for n in (280.0, 330.0)]
    b.tube("dural_sinus", "blood_jugular", back, [4.0, 4.0, 4.5])
    front = [(0.0, _brain_y(b, n) - hb * 0.9 + 8.0, b.z(n)) for n in (295.0, 330.0)]
    b.tube("dural_sinus", "blood_jugular", front, [1.5, 3.0])


def _intracranial(b: BuilderBase, which: tuple[str, ...], rng: Rng) -> None:
    """Physiological calcifications: dense, small, away from the skull."""
    s = 0.85 + 0.5 * max(b.p.age - 30, 0) / 60.0
    if "choroid_plexus" in which:
        sides = (-1.0, 1.0) if rng.random() < 0.85 else (float(rng.choice([-1.0, 1.0])),)
        for side in sides:
            n = Z_CHOROID + rng.uniform(-4, 4)
            x = side * 22.0 * s**0.5 + rng.uniform(-2, 2)
            size = (float(rng.uniform(2.5, 5.0)), float(rng.uniform(2.5, 5.0)))
            _blob(b, "calcification", "calcium_brain", n, x, _brain_y(b, n) + 27.0, size)
    if "pineal" in which:
        n = Z_PINEAL + rng.uniform(-3, 3)
        r = float(rng.uniform(2.0, 4.5))
        _blob(b, "calcification", "calcium_brain", n, 0.0, _brain_y(b, n) + 10.0, (r, r * 1.2))
    if "falx" in which:
        hb = _head(b)[2]
        n0 = float(rng.uniform(*Z_FALX))
        n1 = n0 + float(rng.uniform(10, 25))
        y0 = _brain_y(b, n0) - hb * 0.62 + float(rng.uniform(0, 15))
        y1 = y0 + float(rng.uniform(10, 35))
        r = float(rng.uniform(0.6, 1.2))
        knots = [(n0, 0.2), (n0 + 2, r), (n1 - 2, r), (n1, 0.2)]
        plate = [(b.z(n), 0.0, y0, 0.0, y1, w) for n, w in knots]
        b.add(Capsule.make(LABEL["calcification"], "calcium_brain", plate))
    if "basal_ganglia" in which:
        for side in (-1.0, 1.0):
            n = Z_BASAL_GANGLIA + rng.uniform(-3, 3)
            r = float(rng.uniform(1.5, 3.5))
            _blob(b, "calcification", "calcium_faint", n, side * 18.0, _brain_y(b, n) - 4.0, (r, r))


def _raised_arm_streaks(b: BuilderBase, rng: Rng) -> None:
    """Arms raised beside the head: beam hardening between the two humeri."""
    if b.p.arms != "up" or len(b.arm_bones) != 2:
        return
    left, right = (np.asarray(k, dtype=float) for k in b.arm_bones)
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

    b.dense_pairs.append((pair, rng.uniform(25, 60)))
