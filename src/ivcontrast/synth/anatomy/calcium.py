"""Calcified plaque in the aorta, coronaries and carotid bulbs."""

from __future__ import annotations

import numpy as np

from ivcontrast.synth.anatomy.base import BuilderBase


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
