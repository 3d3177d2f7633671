"""Phantom HU calibrated against the real scans in ../shared/realct (skipped without them):
the real thorax's peaks of fat, soft tissue and lung lie inside the range the phantom
population covers, a phantom noise of 20 HU looks like the real scan's noise, and the
body outline is as irregular as the real one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from ivcontrast.synth import LABEL, SeriesSpec, SyntheticSeries

REALCT = Path(__file__).resolve().parents[2].parent / "shared" / "realct"
THORAX = REALCT / "itkelastix_thorax_4dct_phase00" / "itkelastix00"
PEAKS = {"fat": (-200.0, -40.0), "soft tissue": (-20.0, 100.0), "lung": (-960.0, -700.0)}


def _body(hu: np.ndarray) -> np.ndarray:
    mask = ndimage.binary_opening(hu > -400, iterations=3)
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    largest = lab == 1 + int(np.argmax(ndimage.sum(mask, lab, range(1, n + 1))))
    return ndimage.binary_fill_holes(largest)


def _mode(values: np.ndarray, lo: float, hi: float) -> float:
    sel = values[(values > lo) & (values < hi)]
    hist, edges = np.histogram(sel, bins=np.arange(lo, hi + 1, 4))
    return float(edges[np.argmax(hist)] + 2)


def _local_sd(hu: np.ndarray, lo: float, hi: float) -> float:
    m = ndimage.uniform_filter(hu, 7)
    sd = np.sqrt(np.maximum(ndimage.uniform_filter(hu * hu, 7) - m * m, 0))
    return float(np.median(sd[(m > lo) & (m < hi)]))


def _real_slices() -> list[np.ndarray]:
    out = []
    for path in sorted(THORAX.glob("*.dcm"))[60:85:8]:
        ds = pydicom.dcmread(path)
        out.append(
            ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        )
    return out


def _phantom(seed: int, noise: float, matrix: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """HU and body mask of three chest slices of one phantom patient."""
    spec = SeriesSpec(
        region="chest",
        phase="none",
        seed=seed,
        matrix=matrix,
        fov=500.0,
        slices=3,
        thickness=2.0,
        spacing=30.0,
        noise=noise,
        arms="up",
        pet_ct=False,  # a chest CT, as the real thorax (a PET/CT would reach the head)
    )
    series = SyntheticSeries(spec)
    out = []
    for i in range(len(series)):
        truth = series.truth(i)
        # the body from the ground truth: everything but air and the table
        body = ndimage.binary_fill_holes((truth.labels > 0) & ~truth.mask("table"))
        out.append((truth.hu, body))
    return out


pytestmark = [
    pytest.mark.skipif(not THORAX.is_dir(), reason="shared/realct is not available"),
    pytest.mark.slow,
]


def test_real_tissue_peaks_lie_inside_the_phantom_population() -> None:
    real = _real_slices()
    real_body = np.concatenate([hu[_body(hu)] for hu in real])
    population: dict[str, list[float]] = {name: [] for name in PEAKS}
    for seed in range(8):
        body = np.concatenate([hu[mask] for hu, mask in _phantom(seed, noise=15.0, matrix=128)])
        for name, (lo, hi) in PEAKS.items():
            population[name].append(_mode(body, lo, hi))
    for name, (lo, hi) in PEAKS.items():
        peak = _mode(real_body, lo, hi)
        values = population[name]
        assert min(values) - 10 <= peak <= max(values) + 10, (name, peak, values)
        # and the population is not absurdly wide around it
        assert max(values) - min(values) < 120, (name, values)


def test_phantom_noise_looks_like_the_real_noise() -> None:
    real = _real_slices()
    synth = [hu for hu, _ in _phantom(3, noise=20.0, matrix=512)]
    real_sd = float(np.median([_local_sd(hu, 0, 80) for hu in real]))
    synth_sd = float(np.median([_local_sd(hu, 0, 80) for hu in synth]))
    assert 0.7 < synth_sd / real_sd < 1.4, (synth_sd, real_sd)


def _front_outline_residual(body: np.ndarray, pixel_mm: float) -> float:
    """RMS (mm) of the front of the body outline around its best fit of harmonics up to
    order 3: the bumps a smooth ellipse-like curve lacks (the back lies on the table)."""
    cy, cx = ndimage.center_of_mass(body)
    theta = np.linspace(1.1 * np.pi, 1.9 * np.pi, 120)
    steps = np.arange(0.0, 300.0, 0.25)
    radius = []
    for t in theta:
        rows = np.clip((cy + steps * np.sin(t) / pixel_mm).astype(int), 0, body.shape[0] - 1)
        cols = np.clip((cx + steps * np.cos(t) / pixel_mm).astype(int), 0, body.shape[1] - 1)
        radius.append(steps[np.nonzero(body[rows, cols])[0].max()])
    r = np.array(radius)
    basis = [np.ones_like(theta)]
    for k in (1, 2, 3):
        basis += [np.cos(k * theta), np.sin(k * theta)]
    a = np.column_stack(basis)
    coef, *_ = np.linalg.lstsq(a, r, rcond=None)
    return float(np.sqrt(np.mean((r - a @ coef) ** 2)))


def test_body_outline_is_as_irregular_as_the_real_one() -> None:
    real = []
    for path in sorted(THORAX.glob("*.dcm"))[40:120:10]:
        ds = pydicom.dcmread(path)
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        real.append(_front_outline_residual(_body(hu), float(ds.PixelSpacing[0])))
    synth = []
    for seed in range(5):
        spec = SeriesSpec(region="chest", seed=seed, matrix=512, fov=480.0, slices=1, arms="up")
        series = SyntheticSeries(spec)
        h = series.anatomy.patient.height_scale
        for level in (0.0, -60.0, -120.0):
            labels = series.scanner.clean(level * h)[1]
            body = _body(np.where((labels > 0) & (labels != LABEL["table"]), 0.0, -1000.0))
            synth.append(_front_outline_residual(body, series.plan.pixel_mm))
    # the median phantom: neither a smooth drawing nor a crumpled one
    assert 0.8 * min(real) <= float(np.median(synth)) <= 1.25 * max(real), (synth, real)
