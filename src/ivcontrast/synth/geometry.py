"""Rasterising analytic shapes into one CT slice, with partial-volume edges.

Every shape is described in patient millimetres (LPS: x to the patient's left, y to the
back, z to the head) and painted into a :class:`Canvas` by coverage: the fraction of a
pixel the shape fills, from a signed distance to its border. A ramp ``edge`` mm wide
stands for pixel size plus reconstruction blur, so painting replaces a separate blur of
the whole image. Shapes only touch the pixels of their bounding box.

No body part is a perfect ellipse: a shape with ``wobble`` > 0 moves its border along
its normal by ``wobble`` times a smooth random field of the patient (a
:class:`~ivcontrast.synth.deformation.Deformation`), which is what subtracting the
field from the signed distance does. Neighbouring borders move together, and the field
is continuous along z.

Here: the canvas, signed distances and the basic shapes (ellipses, plates, tubes);
shapes with radial profiles (the body outline, hulls, domes) are in
:mod:`ivcontrast.synth.outlines`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

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


ShapeT = TypeVar("ShapeT", bound="Shape")


def from_knots(
    cls: type[ShapeT], label: int, tissue: str, knots: Array, wobble: float = 0.0
) -> ShapeT:
    """A shape whose parameters are interpolated between ``knots``: rows of (z, params...),
    sorted here by z; the shape spans the first to the last knot's z."""
    k = knots[np.argsort(knots[:, 0])]
    return cls(
        label,  # type: ignore[call-arg]
        tissue,
        float(k[0, 0]),
        float(k[-1, 0]),
        wobble=wobble,
        zk=k[:, 0],
        params=k[:, 1:],
    )


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
        return from_knots(cls, label, tissue, k, wobble)

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
        return from_knots(cls, label, tissue, np.asarray(knots, dtype=float), wobble)

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
