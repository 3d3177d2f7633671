"""Geometry of the slice-probability curve, drawn as inline SVG by the series page.

Pure arithmetic: store coordinates (z in mm, probability) in, SVG user units out, so the
page needs no plotting library and nothing from the internet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 1200
HEIGHT = 330
LEFT, RIGHT, TOP, BOTTOM = 60, 116, 32, 46  # the right margin holds the threshold labels
LABEL_GAP = 13.0  # least vertical distance between the two value labels


@dataclass(frozen=True)
class Tick:
    at: float  # SVG coordinate
    label: str


@dataclass(frozen=True)
class Marker:
    number: int  # 1-based, as the thumbnail captions
    x: float
    z_mm: float


@dataclass(frozen=True)
class CurvePlot:
    width: int
    height: int
    left: float
    right: float  # x of the right edge of the plotting area
    top: float
    bottom: float  # y of the x axis
    line: str  # the d attribute of the curve
    area: str  # the curve closed down to p = 0
    xs: list[float]
    ys: list[float]
    zs: list[float]
    ps: list[float]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    threshold: float
    threshold_y: float
    threshold_label_y: float
    probability: float
    probability_y: float
    probability_label_y: float
    markers: list[Marker]


def nice_step(span: float, target: int = 8) -> float:
    """A 1, 2 or 5 times a power of ten that cuts ``span`` into about ``target`` parts."""
    raw = span / max(target, 1)
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value - round(value)) < 1e-9 else f"{value:g}"


def _spread(a: float, b: float) -> tuple[float, float]:
    """Label positions near ``a`` and ``b`` that keep ``LABEL_GAP`` apart (text baselines)."""
    if abs(a - b) >= LABEL_GAP:
        return a + 4, b + 4
    middle = (a + b) / 2
    low, high = middle + LABEL_GAP / 2 + 4, middle - LABEL_GAP / 2 + 4
    return (low, high) if a >= b else (high, low)


def curve(
    points: Sequence[tuple[float, float]],
    threshold: float,
    probability: float,
    marker_z: Sequence[float | None] = (),
) -> CurvePlot | None:
    """The plot of ``points`` (z_mm, p) sorted by z, or None without points."""
    if not points:
        return None
    pts = sorted(points)
    zs = [z for z, _ in pts]
    z_min, z_max = zs[0], zs[-1]
    known = [z for z in marker_z if z is not None]
    z_min, z_max = min([z_min, *known]), max([z_max, *known])
    if z_max - z_min < 1.0:
        z_min, z_max = z_min - 5.0, z_max + 5.0
    x0, x1 = float(LEFT), float(WIDTH - RIGHT)
    y0, y1 = float(HEIGHT - BOTTOM), float(TOP)  # p = 0 at y0, p = 1 at y1

    def x_of(z: float) -> float:
        return x0 + (z - z_min) / (z_max - z_min) * (x1 - x0)

    def y_of(p: float) -> float:
        return y0 - min(max(p, 0.0), 1.0) * (y0 - y1)

    xs = [round(x_of(z), 2) for z in zs]
    ys = [round(y_of(p), 2) for _, p in pts]
    line = "M" + " L".join(f"{x},{y}" for x, y in zip(xs, ys, strict=True))
    area = f"{line} L{xs[-1]},{y0} L{xs[0]},{y0} Z"
    step = nice_step(z_max - z_min)
    first = math.ceil(z_min / step) * step
    x_ticks = []
    tick = first
    while tick <= z_max + 1e-9:
        x_ticks.append(Tick(round(x_of(tick), 2), _fmt(tick)))
        tick += step
    y_ticks = [Tick(round(y_of(p), 2), f"{p:g}") for p in (0.0, 0.25, 0.5, 0.75, 1.0)]
    threshold_y, probability_y = round(y_of(threshold), 2), round(y_of(probability), 2)
    threshold_label_y, probability_label_y = _spread(threshold_y, probability_y)
    markers = [
        Marker(number=i + 1, x=round(x_of(z), 2), z_mm=z)
        for i, z in enumerate(marker_z)
        if z is not None
    ]
    return CurvePlot(
        width=WIDTH,
        height=HEIGHT,
        left=x0,
        right=x1,
        top=y1,
        bottom=y0,
        line=line,
        area=area,
        xs=xs,
        ys=ys,
        zs=zs,
        ps=[p for _, p in pts],
        x_ticks=x_ticks,
        y_ticks=y_ticks,
        threshold=threshold,
        threshold_y=threshold_y,
        threshold_label_y=threshold_label_y,
        probability=probability,
        probability_y=probability_y,
        probability_label_y=probability_label_y,
        markers=markers,
    )
