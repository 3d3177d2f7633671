"""Shapes with a radial profile: the body's outline with its layers (:class:`Blob`),
star-shaped hulls (:class:`Star`, the mediastinal fat around its vessels) and organs
under a diaphragm dome (:class:`DomeFill`). Painted like every shape in
:mod:`ivcontrast.synth.geometry`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import ConvexHull

from ivcontrast.synth.geometry import (
    F32,
    FIELD_MAX,
    Array,
    Canvas,
    Shape,
    ellipse_distance,
    from_knots,
    interp,
)


@dataclass
class Layer:
    """One border of a :class:`Blob`: radial offsets from the base ellipse, by z."""

    label: int
    tissue: str
    coef: Array  # knots x 10: c0, c1, s1, c2, s2, c3, s3, hump, groove, flat
    wobble: float = 0.0  # mm per unit of the deformation field (see Shape.wobble)


N_COEF = 10


@dataclass
class Blob(Shape):
    """Nested star-shaped outlines around one centre (skin, fat, muscle of a body part).

    Each layer's border lies at ``E(theta) + c0 + sum_k (c_k cos k.theta + s_k sin
    k.theta) + hump * H(theta) - groove * G(theta)`` from the centre, where E is the base
    ellipse, H a broad bump over the back (the paraspinal muscles, theta = 90 +- 37
    degrees) and G a narrow one (the furrow over the spinous processes). ``flat`` > 0
    cuts the layer flat at that distance behind the centre (the back pressed on the
    table; in front of it when ``flat_front``). ``skin`` (mm) paints a skin line inside
    the first layer. The polar basis is computed once for all layers.
    """

    zk: Array = field(default_factory=lambda: np.zeros(0))
    params: Array = field(default_factory=lambda: np.zeros((0, 4)))  # cx, cy, a, b
    layers: list[Layer] = field(default_factory=list)
    skin: float = 0.0
    skin_tissue: str = "skin"
    skin_label: int = 0
    flat_front: bool = False

    def border(self, z: float, layer: int = 0, n: int = 180) -> tuple[Array, Array]:
        """Points (x, y) of one layer's border at z, sampled at ``n`` angles."""
        cx, cy, a, b = interp(z, self.zk, self.params)
        coef = interp(z, self.zk, self.layers[layer].coef)
        t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
        c, s = np.cos(t), np.sin(t)
        basis = [
            c,
            s,
            np.cos(2 * t),
            np.sin(2 * t),
            np.cos(3 * t),
            np.sin(3 * t),
            _bump(s.astype(F32), 0.8),
            -_bump(s.astype(F32), 0.96),
        ]
        r = a * b / np.hypot(b * c, a * s) + coef[0]
        for k in range(8):
            r = r + coef[k + 1] * basis[k]
        x, y = r * c, r * s
        if coef[9] > 0.0:
            y = np.minimum(y, coef[9]) if not self.flat_front else np.maximum(y, -coef[9])
        return cx + x, cy + y

    def paint(self, canvas: Canvas, hu: Mapping[str, float]) -> None:
        z = canvas.z
        cx, cy, a, b = interp(z, self.zk, self.params)
        coefs = [interp(z, self.zk, layer.coef) for layer in self.layers]
        reach = max(a, b) + max(float(np.abs(c[:8]).sum()) for c in coefs)
        reach += FIELD_MAX * max(layer.wobble for layer in self.layers)
        win = canvas.window(cx - reach, cx + reach, cy - reach, cy + reach)
        if win is None:
            return
        xs, ys = canvas.xs[win[1]], canvas.ys[win[0]]
        # The border is smooth: on big windows, evaluate the distance on every other
        # pixel and interpolate (a quarter of the work, sub-0.01 mm error).
        coarse = xs.size > 96 and ys.size > 96
        if coarse:
            xs, ys = xs[::2], ys[::2]
        full_shape = (win[0].stop - win[0].start, win[1].stop - win[1].start)
        u = (xs - F32(cx))[None, :]
        v = (ys - F32(cy))[:, None]
        r = np.sqrt(u * u + v * v)
        r += F32(1e-3)
        c = u / r
        s = v / r
        base = (F32(b) * c) ** 2
        base += (F32(a) * s) ** 2
        np.sqrt(base, out=base)
        np.divide(F32(a * b), base, out=base)
        used = np.any(np.array(coefs)[:, 1:9] != 0.0, axis=0)
        basis: list[np.ndarray | None] = [
            c if used[0] else None,
            s if used[1] else None,
            c * c - s * s if used[2] else None,
            2 * c * s if used[3] else None,
            c * (4 * c * c - 3) if used[4] else None,
            s * (3 - 4 * s * s) if used[5] else None,
            _bump(s, 0.8) if used[6] else None,
            -_bump(s, 0.96) if used[7] else None,
        ]
        for n, (layer, coef) in enumerate(zip(self.layers, coefs, strict=True)):
            dist = r - base
            dist -= F32(coef[0])
            for k in range(8):
                if coef[k + 1] != 0.0:
                    dist -= F32(coef[k + 1]) * basis[k]  # type: ignore[operator]
            # irregular, but still flat where it lies on the table
            canvas.displace(dist, win, layer.wobble, step=2 if coarse else 1)
            if coef[9] > 0.0:
                back = (-v if self.flat_front else v) - F32(coef[9])
                np.maximum(dist, back, out=dist)
            if coarse:
                dist = _upsample2(dist, full_shape)
            if n == 0 and self.skin > 0.0:
                canvas.paint(win, canvas.coverage(dist.copy()), hu[self.skin_tissue], 0)
                dist += F32(self.skin)
            canvas.paint(win, canvas.coverage(dist), hu[layer.tissue], layer.label)


@dataclass
class Star(Shape):
    """A region given by its border's distance from a centre at ``n`` equally spaced
    angles (0 = +x, counter-clockwise towards +y), varying with z: for outlines that are
    neither ellipses nor tubes, such as the mediastinum between the lungs."""

    zk: Array = field(default_factory=lambda: np.zeros(0))
    params: Array = field(default_factory=lambda: np.zeros((0, 2)))  # cx, cy, r_0..r_{n-1}

    @classmethod
    def make(
        cls, label: int, tissue: str, knots: Sequence[Sequence[float]], wobble: float = 0.0
    ) -> Star:
        """``knots``: rows of (z, cx, cy, r_0, ..., r_{n-1}) in ascending z."""
        return from_knots(cls, label, tissue, np.asarray(knots, dtype=float), wobble)

    def paint(self, canvas: Canvas, hu: Mapping[str, float]) -> None:
        prm = interp(canvas.z, self.zk, self.params)
        cx, cy, radii = float(prm[0]), float(prm[1]), prm[2:]
        reach = float(radii.max())
        if reach <= 0.5:
            return
        reach += self.wobble * FIELD_MAX
        win = canvas.window(cx - reach, cx + reach, cy - reach, cy + reach)
        if win is None:
            return
        u = (canvas.xs[win[1]] - F32(cx))[None, :]
        v = (canvas.ys[win[0]] - F32(cy))[:, None]
        n = radii.size
        t = np.arctan2(v, u)
        t *= F32(n / (2.0 * np.pi))
        t %= F32(n)
        # float32 rounding can give t == n for angles just below zero: that is angle 0 again.
        i = np.minimum(t.astype(np.intp), n - 1)
        t -= i
        ring = np.append(radii, radii[0]).astype(F32)
        border = ring[i]
        border += (ring[i + 1] - border) * t
        dist = np.sqrt(u * u + v * v)
        dist -= border
        canvas.displace(dist, win, self.wobble)
        canvas.paint(win, canvas.coverage(dist), hu[self.tissue], self.label)


def hull_radii(
    circles: Sequence[tuple[float, float, float]], n: int = 48
) -> tuple[float, float, Array]:
    """Centre and star radii (``n`` angles) of the convex hull of some circles."""
    c = np.asarray(circles, dtype=float)
    ang = np.linspace(0.0, 2.0 * np.pi, 24, endpoint=False)
    pts = np.concatenate(
        [np.column_stack([x + r * np.cos(ang), y + r * np.sin(ang)]) for x, y, r in c]
    )
    eq = ConvexHull(pts).equations  # n . p + d <= 0 inside
    centre = c[:, :2].mean(axis=0)
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    dirs = np.column_stack([np.cos(t), np.sin(t)])
    along = dirs @ eq[:, :2].T  # rays x faces
    room = -(eq[:, 2] + eq[:, :2] @ centre)  # >= 0: the centre is inside
    with np.errstate(divide="ignore"):
        exit_at = np.where(along > 1e-9, room[None, :] / along, np.inf)
    return float(centre[0]), float(centre[1]), exit_at.min(axis=1)


def _bump(s: Array, start: float) -> Array:
    """0 where sin(theta) < start, rising smoothly to 1 at theta = 90 degrees."""
    g = s - F32(start)
    np.maximum(g, F32(0.0), out=g)
    g *= F32(1.0 / (1.0 - start))
    g *= g
    return g


def _upsample2(d: Array, shape: tuple[int, int]) -> Array:
    """Linear interpolation of a field sampled on every other pixel back to ``shape``."""

    def along_rows(a: Array, n: int) -> Array:
        out = np.empty((n, a.shape[1]), dtype=F32)
        out[0::2] = a[: (n + 1) // 2]
        if n // 2:
            mid = (a[:-1] + a[1:]) * F32(0.5)
            if mid.shape[0] < n // 2:  # the last odd row lies beyond the last sample
                last = a[-1:] + (a[-1:] - a[-2:-1]) * F32(0.5) if a.shape[0] > 1 else a[-1:]
                mid = np.concatenate([mid, last])
            out[1::2] = mid[: n // 2]
        return out

    return along_rows(along_rows(d, shape[0]).T, shape[1]).T


@dataclass
class DomeFill(Shape):
    """Everything inside an ellipse and below a paraboloid dome (liver, spleen under the
    diaphragm): the dome's height is ``top - (dx/ax)^2 - (dy/ay)^2`` times ``depth``."""

    zk: Array = field(default_factory=lambda: np.zeros(0))
    params: Array = field(default_factory=lambda: np.zeros((0, 5)))  # cx, cy, a, b, angle
    dome: tuple[float, float, float, float, float, float, float] = (0, 0, 0, 1, 1, 1, 1)
    # dome: x0, y0, top z, ax, ay, depth behind y0, depth in front of y0 (mm the dome
    # falls at one semi-axis): the diaphragm's recesses reach lowest at the back.

    def paint(self, canvas: Canvas, hu: Mapping[str, float]) -> None:
        cx, cy, a, b, ang = interp(canvas.z, self.zk, self.params)
        if a <= 0.2 or b <= 0.2:
            return
        x0, y0, top, ax, ay, depth, front = self.dome
        rr = max(a, b) + self.wobble * FIELD_MAX
        win = canvas.window(cx - rr, cx + rr, cy - rr, cy + rr)
        if win is None:
            return
        xs, ys = canvas.xs[win[1]], canvas.ys[win[0]]
        dist = ellipse_distance(xs, ys, cx, cy, a, b, ang)
        # z of the dome surface at each pixel; the pixel is inside where z < surface.
        hx = ((xs - F32(x0)) / F32(ax)) ** 2
        hy = ((ys - F32(y0)) / F32(ay)) ** 2
        hy *= np.where(ys < y0, F32(front / depth), F32(1.0))
        # a flat-topped dome: (r^2)^2 keeps the top broad and the recesses steep
        rr = hx[None, :] + hy[:, None]
        rr *= rr
        surf = F32(top) - F32(depth) * rr
        # in-plane distance ~ height difference / surface slope (at least 1)
        slope = max(depth / min(ax, ay) * 2.0, 1.0)
        dz = (F32(canvas.z) - surf) / F32(slope)
        np.maximum(dist, dz, out=dist)
        canvas.displace(dist, win, self.wobble)
        canvas.paint(win, canvas.coverage(dist), hu[self.tissue], self.label)
