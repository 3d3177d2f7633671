"""Calcified vessels: plaque in the aorta, coronaries and carotid bulbs (drawn with the
body), and the calcified walls of the confounders: spot plaques and crescents (rims)
along the aortic and carotid walls, with the blood inside unchanged."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ivcontrast.synth.anatomy.base import BuilderBase, Rng

# Wall rims by grade: (count low, high), length mm, arc span rad, thickness mm.
RIMS: dict[str, dict[str, tuple[float, float]]] = {
    "mild": {"count": (1, 3), "length": (6, 20), "span": (0.4, 1.2), "thick": (0.7, 1.3)},
    "heavy": {"count": (4, 10), "length": (10, 50), "span": (0.8, 3.0), "thick": (0.9, 2.0)},
}
CAROTID_RIM_RATE = {"mild": 0.4, "heavy": 0.9}  # per carotid bulb


class CalciumParts(BuilderBase):
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

    def spot_plaques(self, rng: Rng) -> None:
        """Small plaques on the aortic wall (as the body draws them for calcified patients)."""
        pts, rad = np.asarray(self.aorta_pts), np.asarray(self.aorta_r)
        for _ in range(int(rng.integers(2, 8))):
            i = int(rng.integers(1, len(pts) - 1))
            f = rng.random()
            c, r = pts[i] * (1 - f) + pts[i + 1] * f, rad[i] * (1 - f) + rad[i + 1] * f
            ang = rng.uniform(0, 2 * np.pi)
            x, y, size = c[0] + r * np.cos(ang), c[1] + r * np.sin(ang), rng.uniform(1.0, 2.5)
            self.tube(
                "calcification", "calcium_wall", [(x, y, c[2] - size), (x, y, c[2] + size)], size
            )

    def rim(self, rng: Rng, centre: np.ndarray, radius: np.ndarray, grade: str) -> None:
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
            self.tube("calcification", "calcium_wall", seg + (r + 0.5 * th)[:, None] * off, th)

    def vessel_rims(self, grade: str, rng: Rng) -> None:
        centre, radius = resample(self.aorta_pts, self.aorta_r)
        lo, hi = RIMS[grade]["count"]
        for _ in range(int(rng.integers(int(lo), int(hi) + 1))):
            self.rim(rng, centre, radius, grade)
        for (cx, cy, bif), r in zip(self.carotid_bulbs, self.carotid_radii, strict=True):
            if rng.random() < CAROTID_RIM_RATE[grade]:
                side = 1.0 if cx > 0 else -1.0
                pts = [(cx, cy, bif - 24), (cx, cy, bif), (cx + side * 2, cy + 4, bif + 12)]
                c, rr = resample(pts, [r, r * 1.1, r * 0.9], step=2.0)
                self.rim(rng, c, rr, grade)


def resample(
    points: Sequence[Sequence[float]], radii: Sequence[float], step: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """A polyline and its radii sampled every ``step`` mm."""
    p = np.asarray(points, dtype=float)
    r = np.asarray(radii, dtype=float)
    length = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
    s = np.arange(0.0, length[-1], step)
    q = np.column_stack([np.interp(s, length, p[:, i]) for i in range(3)])
    return q, np.interp(s, length, r)
