"""What the scanner does to the phantom: sampling grid, tissue texture, noise with the
texture of a reconstruction kernel, beam hardening, metal streaks, the table, the
reconstruction circle and calibration offset.

Noise and texture come from small banks of filtered random fields made once per series
(FFT filtering); each slice takes random crops of them, so a slice costs a few array
operations. Slice k's random draws depend only on (seed, k): any slice can be rendered
alone and gives the same pixels as in the full series.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

from ivcontrast.synth.anatomy import Anatomy
from ivcontrast.synth.geometry import F32, Canvas
from ivcontrast.synth.physiology import LABEL, LABELS, TEXTURE_AMPLITUDE

_BANK = 4


@dataclass(frozen=True)
class Acquisition:
    """Everything about one series' acquisition and reconstruction that shapes pixels."""

    matrix: int
    pixel_mm: float
    centre_x: float
    centre_y: float
    thickness: float
    spacing: float
    noise_sigma: float
    noise_cutoff: float  # cycles/mm of the kernel's noise power peak region
    blur_mm: float  # reconstruction blur added to the pixel size at edges
    hu_offset: float
    cupping: float
    fov_circle: str  # "none" | "air" | "padding"
    table: str  # "none" | "flat" | "curved"
    table_gap: float
    table_shell: float
    prone: bool
    tilt_deg: float
    seed: int
    scan_z: tuple[float, float] = (-330.0, 330.0)  # anatomy z range the series covers
    beam_hardening: float = 1.0  # scales the dark bands and streaks between dense bones


class Scanner:
    """Renders slices of one anatomy under one acquisition."""

    def __init__(self, anatomy: Anatomy, acq: Acquisition, hu: dict[str, float]) -> None:
        self.anatomy = anatomy
        self.acq = acq
        self.hu = hu
        m, d = acq.matrix, acq.pixel_mm
        self.xs = (acq.centre_x + (np.arange(m) - (m - 1) / 2) * d).astype(F32)
        self.ys = (acq.centre_y + (np.arange(m) - (m - 1) / 2) * d).astype(F32)
        self.edge = float(np.hypot(d, acq.blur_mm))
        rng = np.random.default_rng([acq.seed, 0x5EED])
        size = m + m // 2
        self.noise_bank = _filtered_fields(rng, size, d, _kernel_filter(acq.noise_cutoff))
        self.streak_bank = _filtered_fields(rng, size, d, _streak_filter())
        self.fine_bank = _filtered_fields(rng, size, d, _gauss_filter(1.2))
        self.coarse_bank = _filtered_fields(rng, size, d, _gauss_filter(6.0, 20.0))
        self.fine_lut = np.zeros(256, dtype=F32)
        self.coarse_lut = np.zeros(256, dtype=F32)
        for name, (fine, coarse) in TEXTURE_AMPLITUDE.items():
            self.fine_lut[LABEL[name]] = fine
            self.coarse_lut[LABEL[name]] = coarse
        # Mixing of undiluted contrast with plain blood in the right atrium and SVC.
        mix = max(hu["blood_sv_inj"] - hu["blood_ivc"], 0.0) * 0.25
        for name in ("heart_ra", "svc", "brachiocephalic_vein"):
            self.coarse_lut[LABEL[name]] = mix
        self.gravity_lut = np.zeros(256, dtype=F32)
        self.gravity_lut[LABEL["lung"]] = 0.3  # HU per mm towards the dependent side
        overlap = max(0.0, 1.0 - acq.spacing / max(acq.thickness, 1e-3))
        self.z_corr = float(np.clip(0.15 + 0.6 * overlap, 0.0, 0.7))
        body_y = [anatomy.body_extent(z) for z in np.linspace(*acq.scan_z, 25)]
        back = max(cy + b for _, cy, _, b in body_y)
        front = min(cy - b for _, cy, _, b in body_y)
        # a few mm of margin: the outline is sampled, not solved for its extreme
        self.table_y = front - acq.table_gap - 3.0 if acq.prone else back + acq.table_gap + 3.0
        self._table_cache: dict[
            tuple[float, ...], list[tuple[tuple[slice, slice], np.ndarray, str, int]]
        ] = {}

    # --- the pipeline -------------------------------------------------------------

    def render(self, z: float, index: int) -> tuple[np.ndarray, np.ndarray]:
        """HU (float32) and labels (uint8) of the slice centred at anatomy ``z``.

        Arrays are in patient order: rows go to +y (back), columns to +x (left).
        """
        acq = self.acq
        rng = np.random.default_rng([acq.seed, index, 0xC7])
        if acq.tilt_deg == 0.0:
            canvas = self._paint(self.xs, self.ys, z)
            hu, labels = canvas.hu, canvas.labels
        else:
            hu, labels = self._paint_tilted(z)
        self._texture(hu, labels, z)
        self._artifacts(hu, z, rng)
        self._noise(hu, z, index)
        hu += F32(acq.hu_offset)
        if acq.fov_circle != "none":
            r2 = ((self.xs - acq.centre_x) ** 2)[None, :] + ((self.ys - acq.centre_y) ** 2)[:, None]
            outside = r2 > (acq.matrix * acq.pixel_mm / 2) ** 2
            hu[outside] = -1024.0 if acq.fov_circle == "air" else -3024.0
            labels[outside] = 0
        return hu, labels

    def clean(self, z: float) -> tuple[np.ndarray, np.ndarray]:
        """The painted phantom without texture, artifacts, noise or offset."""
        if self.acq.tilt_deg == 0.0:
            canvas = self._paint(self.xs, self.ys, z)
            return canvas.hu, canvas.labels
        return self._paint_tilted(z)

    def _paint(self, xs: np.ndarray, ys: np.ndarray, z: float) -> Canvas:
        deformation = self.anatomy.deformation
        field = None if deformation is None else deformation.plane(xs, ys, z)
        canvas = Canvas(xs, ys, z, self.acq.thickness, self.edge, fill=-1000.0, field=field)
        for shape in self.anatomy.active(z):
            shape.paint(canvas, self.hu)
        self._table(canvas)
        return canvas

    def _paint_tilted(self, z: float) -> tuple[np.ndarray, np.ndarray]:
        """Gantry tilt: each row lies at its own z; paint bands of rows at their z."""
        acq = self.acq
        t = np.deg2rad(acq.tilt_deg)
        m = acq.matrix
        off = (np.arange(m) - (m - 1) / 2) * acq.pixel_mm
        ys = (acq.centre_y + off * np.cos(t)).astype(F32)
        zs = z + off * np.sin(t)
        band = max(1, int(max(acq.thickness, 1.0) / max(acq.pixel_mm * abs(np.sin(t)), 1e-6)))
        hu = np.empty((m, m), dtype=F32)
        labels = np.empty((m, m), dtype=np.uint8)
        for r0 in range(0, m, band):
            r1 = min(r0 + band, m)
            canvas = self._paint(self.xs, ys[r0:r1], float(zs[(r0 + r1 - 1) // 2]))
            hu[r0:r1], labels[r0:r1] = canvas.hu, canvas.labels
        return hu, labels

    def _table(self, canvas: Canvas) -> None:
        """The couch: shells around a foam core, and a pad under the patient.

        It does not change along z, so its coverage is computed once per grid.
        """
        acq = self.acq
        if acq.table == "none":
            return
        key = (
            canvas.xs.size,
            float(canvas.xs[0]),
            canvas.ys.size,
            float(canvas.ys[0]),
            float(canvas.ys[-1]),
        )
        layers = self._table_cache.get(key)
        if layers is None:
            layers = self._table_layers(canvas)
            self._table_cache[key] = layers
        for win, cov, tissue, label in layers:
            c = cov.copy()
            if tissue == "pad":
                # the pad only replaces air, never the patient
                c *= canvas.hu[win] < -800
            canvas.paint(win, c, self.hu[tissue], label)

    def _table_layers(
        self, canvas: Canvas
    ) -> list[tuple[tuple[slice, slice], np.ndarray, str, int]]:
        acq = self.acq
        sign = -1.0 if acq.prone else 1.0  # away from the patient
        curve = 0.0 if acq.table == "flat" else 1.0 / 900.0
        # a cradle: the edges curve up towards the patient
        top = self.table_y - sign * curve * (canvas.xs - acq.centre_x) ** 2
        depth = sign * (canvas.ys[:, None] - top[None, :])
        inside_x = np.abs(canvas.xs - acq.centre_x) < 240.0
        # thin carbon-fibre shells around foam: often a single thin line in the FOV
        shell, core = acq.table_shell, 10.0 + 12.0 * acq.table_shell
        out = []
        for lo, hi, tissue, label in (
            (-acq.table_gap * 0.8, 0.0, "pad", 0),
            (0.0, shell, "table_shell", LABEL["table"]),
            (shell, shell + core, "table_core", LABEL["table"]),
            (shell + core, 2 * shell + core, "table_shell", LABEL["table"]),
        ):
            if tissue == "pad" and acq.table_gap < 8.0:
                continue
            dist = np.maximum(lo - depth, depth - hi)
            dist[:, ~inside_x] = 1e3
            rows = np.nonzero((dist < canvas.edge).any(axis=1))[0]
            if rows.size == 0:
                continue
            win = (slice(int(rows[0]), int(rows[-1]) + 1), slice(0, canvas.xs.size))
            out.append((win, canvas.coverage(dist[win].astype(F32)), tissue, label))
        return out

    def _texture(self, hu: np.ndarray, labels: np.ndarray, z: float) -> None:
        fine = self._crop(self.fine_bank, z, 23.0)
        coarse = self._crop(self.coarse_bank, z, 41.0)
        hu += self.fine_lut[labels] * fine
        hu += self.coarse_lut[labels] * coarse
        g = self.gravity_lut[labels]
        dep = (self.ys - self.acq.centre_y) * (-1.0 if self.acq.prone else 1.0)
        hu += g * dep[:, None]

    def _crop(self, bank: list[np.ndarray], z: float, period: float) -> np.ndarray:
        """A field that varies smoothly with z: two bank fields mixed by angle z / period.

        The crop offset is fixed per series (drawn from the bank's seed), so neighbouring
        slices see the same underlying texture.
        """
        m = self.acq.matrix
        phase = z / period
        i = int(np.floor(phase)) % len(bank)
        j = (i + 1) % len(bank)
        w = phase - np.floor(phase)
        a, b = np.cos(w * np.pi / 2), np.sin(w * np.pi / 2)
        return F32(a) * bank[i][:m, :m] + F32(b) * bank[j][:m, :m]

    def _artifacts(self, hu: np.ndarray, z: float, rng: np.random.Generator) -> None:
        acq = self.acq
        cx, cy, a, b = (F32(v) for v in self.anatomy.body_extent(z))
        u2 = ((self.xs - cx) / a) ** 2
        v2 = ((self.ys - cy) / b) ** 2
        inner = 1.0 - (u2[None, :] + v2[:, None])
        np.clip(inner, 0.0, 1.0, out=inner)
        self._inner = inner
        if acq.cupping > 0:
            hu -= F32(acq.cupping) * inner
        for pair_fn, strength in self.anatomy.dense_pairs:
            seg = pair_fn(z)
            if seg is None:
                continue
            x0, y0, x1, y1 = seg
            band = _line_band(self.xs, self.ys, x0, y0, x1, y1, width=6.0 + acq.blur_mm * 3)
            hu -= F32(strength * acq.beam_hardening) * band
        for metal in self.anatomy.metal:
            if metal.zmin - acq.thickness / 2 <= z <= metal.zmax + acq.thickness / 2:
                self._streaks(hu, metal.x, metal.y, metal.strength, rng)

    def _streaks(
        self, hu: np.ndarray, x: float, y: float, strength: float, rng: np.random.Generator
    ) -> None:
        """Alternating bright and dark rays from a metal object, fading with distance."""
        u = (self.xs - F32(x))[None, :]
        v = (self.ys - F32(y))[:, None]
        r = np.sqrt(u * u + v * v) + F32(1.0)
        fade = F32(strength) * F32(40.0) / (F32(20.0) + r)
        for _ in range(int(rng.integers(6, 14))):
            ang = rng.uniform(0, np.pi)
            amp = rng.uniform(150, 700) * (1 if rng.random() < 0.45 else -1)
            d = np.abs(u * F32(np.sin(ang)) - v * F32(np.cos(ang)))
            width = F32(rng.uniform(0.8, 2.5))
            hu += F32(amp) * fade * np.exp(-((d / width) ** 2))

    def _noise(self, hu: np.ndarray, z: float, index: int) -> None:
        acq = self.acq
        m = acq.matrix

        # Neighbouring slices share one of their two noise fields: reconstructions that
        # overlap in z have correlated noise.
        def field(k: int) -> np.ndarray:
            r = np.random.default_rng([acq.seed, k, 0x4E])
            f = self.noise_bank[int(r.integers(_BANK))]
            i0, j0 = r.integers(0, f.shape[0] - m + 1, size=2)
            out = f[i0 : i0 + m, j0 : j0 + m]
            return out[::-1] if r.random() < 0.5 else out

        c = self.z_corr
        wa = np.sqrt(c)
        wb = np.sqrt(1 - c)
        noise = F32(wa) * field(index) + F32(wb) * field(index + 1_000_003)
        inner = self._inner
        body = np.minimum(inner * 8.0, 1.0)
        sigma = F32(acq.noise_sigma) * (F32(0.45) + F32(0.55) * body + F32(0.35) * inner)
        hu += noise * sigma
        strength = acq.beam_hardening * sum(
            s for fn, s in self.anatomy.dense_pairs if fn(z) is not None
        )
        if strength > 0:
            r = np.random.default_rng([acq.seed, index, 0x57])
            f = self.streak_bank[int(r.integers(_BANK))]
            i0, j0 = r.integers(0, f.shape[0] - m + 1, size=2)
            hu += F32(acq.noise_sigma * strength / 160.0) * body * f[i0 : i0 + m, j0 : j0 + m]


_Filter = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""A noise filter: its amplitude at spatial frequencies (fx, fy), per mm."""


def _filtered_fields(
    rng: np.random.Generator, size: int, pixel: float, filt: _Filter
) -> list[np.ndarray]:
    """Unit-variance random fields whose power spectrum is ``filt(fx, fy)**2``."""
    fy = sfft.fftfreq(size, d=pixel)[:, None]
    fx = sfft.rfftfreq(size, d=pixel)[None, :]
    amp = filt(fx, fy).astype(np.float32)
    out = []
    for _ in range(_BANK):
        white = rng.standard_normal((size, size), dtype=np.float32)
        f = sfft.irfft2(sfft.rfft2(white) * amp, s=(size, size)).astype(F32)
        f -= f.mean()
        f /= f.std() + 1e-6
        out.append(f)
    return out


def _kernel_filter(cutoff: float) -> _Filter:
    """Filtered back-projection noise: ramp times the kernel's roll-off."""

    def filt(fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
        f = np.sqrt(fx * fx + fy * fy)
        return np.sqrt(f + 0.02) * np.exp(-((f / cutoff) ** 2))

    return filt


def _streak_filter() -> _Filter:
    """Photon-starvation streaks: long along x, short along y."""

    def filt(fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
        return np.exp(-((fx / 0.01) ** 2)) * np.exp(-((fy / 0.6) ** 2))

    return filt


def _gauss_filter(*corr_mm: float) -> _Filter:
    """Gaussian-correlated texture; several lengths add with equal variance."""

    def filt(fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
        f2 = fx * fx + fy * fy
        return sum(c * np.exp(-f2 * (np.pi * c) ** 2) for c in corr_mm)

    return filt


def _line_band(
    xs: np.ndarray, ys: np.ndarray, x0: float, y0: float, x1: float, y1: float, width: float
) -> np.ndarray:
    """A soft band (0..1) along the segment between two dense objects."""
    dx, dy = x1 - x0, y1 - y0
    length = float(np.hypot(dx, dy)) or 1.0
    nx, ny = -dy / length, dx / length
    d = (xs - F32(x0))[None, :] * F32(nx) + (ys - F32(y0))[:, None] * F32(ny)
    t = ((xs - F32(x0))[None, :] * F32(dx) + (ys - F32(y0))[:, None] * F32(dy)) / F32(
        length * length
    )
    along = np.clip(1.0 - np.abs(t - 0.5) * 2.0, 0.0, 1.0) ** 0.5
    return np.exp(-((d / F32(width)) ** 2)) * along


__all__ = ["LABELS", "Acquisition", "Scanner"]
