"""The smooth random field that makes a patient's borders irregular."""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft

from ivcontrast.synth.geometry import F32, FIELD_MAX, Array


class Deformation:
    """A smooth random field over the patient (unit sd, clipped to +-FIELD_MAX).

    It lives on a coarse 3D grid in patient millimetres, so it belongs to the patient,
    not to a series: every phase of one study deforms alike. ``plane`` samples it on a
    slice's pixel grid (linear in z, bilinear in the plane: two small matrix products).
    """

    def __init__(
        self,
        rng: np.random.Generator,
        half_width: float,
        z_range: tuple[float, float],
        step: float = 8.0,
        scales: tuple[tuple[float, float], ...] = ((30.0, 1.0), (12.0, 0.35)),
    ) -> None:
        n = int(np.ceil(2 * half_width / step)) + 1
        nz = int(np.ceil((z_range[1] - z_range[0]) / step)) + 1
        self.x0 = -half_width
        self.z0 = z_range[0]
        self.step = step
        fz = np.fft.fftfreq(nz, d=step)[:, None, None]
        fy = np.fft.fftfreq(n, d=step)[None, :, None]
        fx = np.fft.rfftfreq(n, d=step)[None, None, :]
        f2 = fx * fx + fy * fy + fz * fz
        # correlation length c (mm) and weight w of each scale: coarse bulges, fine bumps
        amp = sum(w * c**1.5 * np.exp(-f2 * (np.pi * c) ** 2 / 2) for c, w in scales)
        white = rng.standard_normal((nz, n, n), dtype=F32)
        grid = sfft.irfftn(sfft.rfftn(white) * amp.astype(F32), s=white.shape, axes=(0, 1, 2))
        grid /= grid.std() + 1e-9
        self.grid = np.clip(grid, -FIELD_MAX, FIELD_MAX).astype(F32)
        self._weights: dict[tuple[int, float, float], Array] = {}

    def _interp_matrix(self, coords: Array) -> Array:
        """Rows of bilinear weights from grid nodes to ``coords`` (cached per grid)."""
        key = (int(coords.size), float(coords[0]), float(coords[-1]))
        w = self._weights.get(key)
        if w is None:
            n = self.grid.shape[1]
            g = np.clip((coords.astype(float) - self.x0) / self.step, 0.0, n - 1.000001)
            i = np.floor(g).astype(int)
            f = g - i
            w = np.zeros((coords.size, n), dtype=F32)
            rows = np.arange(coords.size)
            w[rows, i] = 1.0 - f
            w[rows, np.minimum(i + 1, n - 1)] += f
            self._weights[key] = w
        return w

    def plane(self, xs: Array, ys: Array, z: float) -> Array:
        """The field on the grid ``ys`` x ``xs`` (rows x columns) at ``z``, float32."""
        nz = self.grid.shape[0]
        g = float(np.clip((z - self.z0) / self.step, 0.0, nz - 1.000001))
        k = int(g)
        f = F32(g - k)
        k1 = min(k + 1, nz - 1)
        p = self.grid[k] * (F32(1.0) - f) + self.grid[k1] * f
        wy = self._interp_matrix(ys)
        wx = self._interp_matrix(xs)
        return (wy @ p) @ wx.T
