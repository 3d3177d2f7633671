"""Rasterising analytic shapes into one CT slice, with partial-volume edges.

Every shape is described in patient millimetres (LPS: x to the patient's left, y to the
back, z to the head) and painted into a :class:`Canvas` by coverage: the fraction of a
pixel the shape fills, from a signed distance to its border. A ramp ``edge`` mm wide
stands for pixel size plus reconstruction blur, so painting replaces a separate blur of
the whole image. Shapes only touch the pixels of their bounding box.

No body part is a perfect ellipse: a shape with ``wobble`` > 0 moves its border along
its normal by ``wobble`` times a smooth random field of the patient (a
:class:`Deformation`), which is what subtracting the field from the signed distance
does. Neighbouring borders move together, and the field is continuous along z.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sfft
from scipy.spatial import ConvexHull

F32 = np.float32
Array = np.ndarray
FIELD_MAX = 3.0  # the deformation field is clipped to +-FIELD_MAX (unit sd)


class Canvas:
    """One slice being painted: HU (float32) and a label map (uint8) on a pixel grid.

    ``xs`` are the x coordinates of the columns and ``ys`` the y coordinates of the rows
    (both ascending, uniform); ``z`` is the plane being rendered; ``thickness`` is the
    reconstructed slice thickness, used for the partial volume of thin oblique tubes.
    """

    def __init__(
        self,
        xs: Array,
        ys: Array,
        z: float,
        thickness: float,
        edge: float,
        fill: float,
        field: Array | None = None,
    ) -> None:
        self.xs = np.asarray(xs, dtype=F32)
        self.ys = np.asarray(ys, dtype=F32)
        self.z = float(z)
        self.thickness = float(thickness)
        self.edge = float(edge)
        self.dx = float(self.xs[1] - self.xs[0]) if self.xs.size > 1 else 1.0
        self.dy = float(self.ys[1] - self.ys[0]) if self.ys.size > 1 else 1.0
        self.hu = np.full((self.ys.size, self.xs.size), fill, dtype=F32)
        self.labels = np.zeros((self.ys.size, self.xs.size), dtype=np.uint8)
        self.field = field  # the deformation field on this grid (unit sd, |f| <= FIELD_MAX)

    def displace(
        self, dist: Array, win: tuple[slice, slice], amount: float, step: int = 1
    ) -> Array:
        """Move a border outwards by ``amount`` x the deformation field (in place)."""
        if amount and self.field is not None:
            f = self.field[win]
            if step > 1:
                f = f[::step, ::step]
            dist -= F32(amount) * f
        return dist

    def window(
        self, xmin: float, xmax: float, ymin: float, ymax: float
    ) -> tuple[slice, slice] | None:
        """Index slices of the pixels whose centres lie in the box (widened by the edge)."""
        m = self.edge
        c0 = max(int(np.ceil((xmin - m - self.xs[0]) / self.dx)), 0)
        c1 = min(int(np.floor((xmax + m - self.xs[0]) / self.dx)) + 1, self.xs.size)
        r0 = max(int(np.ceil((ymin - m - self.ys[0]) / self.dy)), 0)
        r1 = min(int(np.floor((ymax + m - self.ys[0]) / self.dy)) + 1, self.ys.size)
        if c0 >= c1 or r0 >= r1:
            return None
        return slice(r0, r1), slice(c0, c1)

    def coverage(self, dist: Array) -> Array:
        """Signed distance (mm, negative inside) -> fraction of the pixel covered, in place."""
        dist *= -1.0 / self.edge
        dist += 0.5
        np.clip(dist, 0.0, 1.0, out=dist)
        return dist

    def paint(self, win: tuple[slice, slice], cov: Array, hu: float, label: int) -> None:
        """Composite ``hu`` over the window with coverage ``cov`` (consumed)."""
        view = self.hu[win]
        mask = cov >= 0.5
        cov *= hu - view
        view += cov
        if label:
            self.labels[win][mask] = label


def ellipse_distance(
    xs: Array, ys: Array, cx: float, cy: float, a: float, b: float, angle: float = 0.0
) -> Array:
    """Approximate signed distance (mm) to an ellipse border, exact on the border's normal.

    ``angle`` (radians) turns the ellipse's ``a`` axis from +x towards +y.
    """
    a = max(a, 1e-3)
    b = max(b, 1e-3)
    u = xs - F32(cx)
    v = ys - F32(cy)
    if angle == 0.0:
        q2 = (u * u / F32(a * a))[None, :] + (v * v / F32(b * b))[:, None]
        r2 = (u * u)[None, :] + (v * v)[:, None]
    else:
        ca, sa = F32(np.cos(angle)), F32(np.sin(angle))
        p = u[None, :] * ca + v[:, None] * sa
        q = v[:, None] * ca - u[None, :] * sa
        r2 = p * p + q * q
        q2 = p * p / F32(a * a) + q * q / F32(b * b)
    # Along the ray from the centre the border sits at r / sqrt(q2); near the border
    # (q2 - 1) * r_border / 2 is the distance along the ray.
    np.maximum(q2, F32(1e-6), out=q2)
    r2 /= q2
    np.sqrt(r2, out=r2)
    q2 -= 1.0
    q2 *= r2
    q2 *= 0.5
    return q2


def segment_distance(
    xs: Array,
    ys: Array,
    z: float,
    p0: Array,
    p1: Array,
    r0: float,
    r1: float,
) -> Array:
    """Signed distance (mm) from plane-``z`` pixels to a cone frustum around segment p0-p1."""
    d = p1 - p0
    dd = float(d @ d) or 1e-9
    # t = ((p - p0) . d) / |d|^2, separable in x and y.
    tx = ((xs - F32(p0[0])) * F32(d[0] / dd))[None, :]
    ty = ((ys - F32(p0[1])) * F32(d[1] / dd))[:, None]
    t = tx + ty
    t += F32((z - p0[2]) * d[2] / dd)
    np.clip(t, 0.0, 1.0, out=t)
    ex = (xs - F32(p0[0]))[None, :] - t * F32(d[0])
    ey = (ys - F32(p0[1]))[:, None] - t * F32(d[1])
    ez = F32(z - p0[2]) - t * F32(d[2])
    ex *= ex
    ey *= ey
    ez *= ez
    ex += ey
    ex += ez
    np.sqrt(ex, out=ex)
    t *= F32(r1 - r0)
    t += F32(r0)
    ex -= t
    return ex


def capsule2d_distance(
    xs: Array, ys: Array, x0: float, y0: float, x1: float, y1: float, r: float
) -> Array:
    """Signed distance (mm) to a flat capsule (a thick line segment) in the plane."""
    p0 = np.array([x0, y0, 0.0])
    p1 = np.array([x1, y1, 0.0])
    return segment_distance(xs, ys, 0.0, p0, p1, r, r)


def interp(z: float, zk: Array, values: Array) -> Array:
    """Linear interpolation of the rows of ``values`` (knots x params) at ``z``."""
    i = int(np.searchsorted(zk, z))
    if i <= 0:
        return values[0]
    if i >= zk.size:
        return values[-1]
    w = (z - zk[i - 1]) / (zk[i] - zk[i - 1])
    return values[i - 1] * (1.0 - w) + values[i] * w


@dataclass
class Shape:
    """Base of everything paintable: a label, a tissue key and a z extent."""

    label: int
    tissue: str
    zmin: float
    zmax: float
    wobble: float = 0.0  # mm the border moves per unit of the deformation field

    def active(self, z: float) -> bool:
        return self.zmin <= z <= self.zmax

    def paint(self, canvas: Canvas, hu: Mapping[str, float]) -> None:
        raise NotImplementedError


@dataclass
class Ellipse(Shape):
    """An elliptic cross-section whose centre, axes and angle vary with z (knots)."""

    zk: Array = field(default_factory=lambda: np.zeros(0))
    params: Array = field(default_factory=lambda: np.zeros((0, 5)))  # cx, cy, a, b, angle

    @classmethod
    def make(
        cls,
        label: int,
        tissue: str,
        knots: Sequence[Sequence[float]],
        angle: float = 0.0,
        wobble: float = 0.0,
    ) -> Ellipse:
        """``knots``: rows of (z, cx, cy, a, b[, angle]) in ascending z."""
        k = np.asarray(knots, dtype=float)
        if k.shape[1] == 5:
            k = np.column_stack([k, np.full(k.shape[0], angle)])
        order = np.argsort(k[:, 0])
        k = k[order]
        return cls(
            label,
            tissue,
            float(k[0, 0]),
            float(k[-1, 0]),
            wobble=wobble,
            zk=k[:, 0],
            params=k[:, 1:],
        )

    def at(self, z: float) -> Array:
        return interp(z, self.zk, self.params)

    def paint(self, canvas: Canvas, hu: Mapping[str, float]) -> None:
        cx, cy, a, b, ang = self.at(canvas.z)
        if a <= 0.2 or b <= 0.2:
            return
        rr = max(a, b) + self.wobble * FIELD_MAX
        win = canvas.window(cx - rr, cx + rr, cy - rr, cy + rr)
        if win is None:
            return
        dist = ellipse_distance(canvas.xs[win[1]], canvas.ys[win[0]], cx, cy, a, b, ang)
        canvas.displace(dist, win, self.wobble)
        canvas.paint(win, canvas.coverage(dist), hu[self.tissue], self.label)


@dataclass
class Capsule(Shape):
    """A flat plate seen edge-on (scapula, sternum): a thick segment varying with z."""

    zk: Array = field(default_factory=lambda: np.zeros(0))
    params: Array = field(default_factory=lambda: np.zeros((0, 5)))  # x0, y0, x1, y1, r

    @classmethod
    def make(
        cls, label: int, tissue: str, knots: Sequence[Sequence[float]], wobble: float = 0.0
    ) -> Capsule:
        k = np.asarray(knots, dtype=float)
        k = k[np.argsort(k[:, 0])]
        return cls(
            label,
            tissue,
            float(k[0, 0]),
            float(k[-1, 0]),
            wobble=wobble,
            zk=k[:, 0],
            params=k[:, 1:],
        )

    def paint(self, canvas: Canvas, hu: Mapping[str, float]) -> None:
        x0, y0, x1, y1, r = interp(canvas.z, self.zk, self.params)
        if r <= 0.2:
            return
        m = r + self.wobble * FIELD_MAX
        win = canvas.window(min(x0, x1) - m, max(x0, x1) + m, min(y0, y1) - m, max(y0, y1) + m)
        if win is None:
            return
        dist = capsule2d_distance(canvas.xs[win[1]], canvas.ys[win[0]], x0, y0, x1, y1, r)
        canvas.displace(dist, win, self.wobble)
        canvas.paint(win, canvas.coverage(dist), hu[self.tissue], self.label)


@dataclass
class Tube(Shape):
    """Cone-frustum segments in 3D: a polyline (vessel, airway, rib) or a whole tree.

    Thin tubes lying in a thick slice fill only part of it: their contrast is scaled by
    the fraction of the slab they occupy.
    """

    p0: Array = field(default_factory=lambda: np.zeros((0, 3)))
    p1: Array = field(default_factory=lambda: np.zeros((0, 3)))
    r0: Array = field(default_factory=lambda: np.zeros(0))
    r1: Array = field(default_factory=lambda: np.zeros(0))
    seg_zmin: Array = field(default_factory=lambda: np.zeros(0))
    seg_zmax: Array = field(default_factory=lambda: np.zeros(0))
    height: Array = field(default_factory=lambda: np.zeros(0))  # z extent of the tube wall

    @classmethod
    def make(
        cls,
        label: int,
        tissue: str,
        points: Sequence[Sequence[float]],
        radii: object,
        wobble: float = 0.0,
    ) -> Tube:
        """A polyline through ``points`` with a radius per point (or one radius)."""
        p = np.asarray(points, dtype=float)
        r = np.broadcast_to(np.asarray(radii, dtype=float), (p.shape[0],))
        return cls.segments(label, tissue, p[:-1], p[1:], r[:-1], r[1:], wobble)

    @classmethod
    def segments(
        cls,
        label: int,
        tissue: str,
        p0: Array,
        p1: Array,
        r0: Array,
        r1: Array,
        wobble: float = 0.0,
    ) -> Tube:
        p0, p1 = np.asarray(p0, dtype=float), np.asarray(p1, dtype=float)
        r0, r1 = np.asarray(r0, dtype=float), np.asarray(r1, dtype=float)
        lo = np.minimum(p0[:, 2] - r0, p1[:, 2] - r1)
        hi = np.maximum(p0[:, 2] + r0, p1[:, 2] + r1)
        d = p1 - p0
        norm = np.sqrt((d * d).sum(axis=1)) + 1e-9
        horizontal = np.sqrt(np.maximum(1.0 - (d[:, 2] / norm) ** 2, 1e-6))
        height = (r0 + r1) / horizontal
        return cls(
            label,
            tissue,
            float(lo.min()),
            float(hi.max()),
            wobble=wobble,
            p0=p0,
            p1=p1,
            r0=r0,
            r1=r1,
            seg_zmin=lo,
            seg_zmax=hi,
            height=height,
        )

    def paint(self, canvas: Canvas, hu: Mapping[str, float]) -> None:
        z = canvas.z
        value = hu[self.tissue]
        for i in np.nonzero((self.seg_zmin <= z) & (self.seg_zmax >= z))[0]:
            self._paint_segment(canvas, value, int(i))

    def _paint_segment(self, canvas: Canvas, hu: float, i: int) -> None:
        p0, p1 = self.p0[i], self.p1[i]
        r0, r1 = float(self.r0[i]), float(self.r1[i])
        rr = max(r0, r1) + self.wobble * FIELD_MAX
        win = canvas.window(
            min(p0[0], p1[0]) - rr,
            max(p0[0], p1[0]) + rr,
            min(p0[1], p1[1]) - rr,
            max(p0[1], p1[1]) + rr,
        )
        if win is None:
            return
        dist = segment_distance(canvas.xs[win[1]], canvas.ys[win[0]], canvas.z, p0, p1, r0, r1)
        canvas.displace(dist, win, self.wobble)
        cov = canvas.coverage(dist)
        extent = float(self.height[i])
        if extent < canvas.thickness:
            cov *= F32(extent / canvas.thickness)
        canvas.paint(win, cov, hu, self.label)


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
        k = np.asarray(knots, dtype=float)
        k = k[np.argsort(k[:, 0])]
        return cls(
            label,
            tissue,
            float(k[0, 0]),
            float(k[-1, 0]),
            wobble=wobble,
            zk=k[:, 0],
            params=k[:, 1:],
        )

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
