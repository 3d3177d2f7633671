"""What makes a phantom look like a patient rather than a drawing: the great vessels sit
in mediastinal fat, outlines are irregular yet belong to the patient (every phase of a
study deforms alike, and neighbouring slices alike), and the noise has a CT kernel's
band-pass power spectrum."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.spatial import ConvexHull

from ivcontrast.synth import LABEL, SeriesSpec, SyntheticSeries


def _chest(seed: int, **kw: object) -> SyntheticSeries:
    args: dict[str, object] = dict(
        region="chest", seed=seed, matrix=256, fov=400.0, slices=1, noise=10.0, arms="up"
    )
    args.update(kw)
    return SyntheticSeries(SeriesSpec(**args))  # type: ignore[arg-type]


@pytest.mark.slow
def test_great_vessels_sit_in_mediastinal_fat_not_in_lung() -> None:
    """Between the aorta, the pulmonary trunk and the superior vena cava there is fat and
    soft tissue, never lung (the convex hull of the vessels holds almost no lung)."""
    worst = 0.0
    for seed in range(6):
        series = _chest(seed, phase=("none", "arterial")[seed % 2])
        h = series.anatomy.patient.height_scale
        for level in (15.0, 0.0, -15.0, -30.0):
            _, labels = series.scanner.clean(level * h)
            vessels = np.isin(labels, [LABEL["aorta"], LABEL["svc"], LABEL["pulmonary_artery"]])
            faces = ConvexHull(np.argwhere(vessels)).equations  # n . p + d <= 0 inside
            grid = np.argwhere(np.ones_like(vessels))
            inside = (grid @ faces[:, :2].T + faces[:, 2] <= 1e-9).all(axis=1)
            assert inside.sum() > 100
            worst = max(worst, float((labels.ravel()[inside] == LABEL["lung"]).mean()))
    assert worst < 0.05, worst


def test_every_phase_of_a_patient_has_the_same_outlines() -> None:
    common = dict(anatomy_seed=12, matrix=128, fov=420.0, slices=1, noise=5.0, arms="up")
    a = _chest(1, phase="none", **common)
    b = _chest(1, phase="portal_venous", **common)
    z = -40.0 * a.anatomy.patient.height_scale
    np.testing.assert_array_equal(a.scanner.clean(z)[1], b.scanner.clean(z)[1])
    # another series of the study (another scanner seed) deforms the patient alike
    c = _chest(2, phase="arterial", **common)
    assert a.anatomy.deformation is not None and c.anatomy.deformation is not None
    np.testing.assert_array_equal(a.anatomy.deformation.grid, c.anatomy.deformation.grid)
    other = _chest(3, phase="none", matrix=128, fov=420.0, slices=1, noise=5.0, arms="up")
    assert other.anatomy.deformation is not None
    assert not np.array_equal(a.anatomy.deformation.grid, other.anatomy.deformation.grid)


def test_deformation_is_smooth_along_z_and_moves_borders() -> None:
    series = _chest(4)
    deformation = series.anatomy.deformation
    assert deformation is not None
    xs = series.scanner.xs
    a = deformation.plane(xs, xs, -50.0)
    b = deformation.plane(xs, xs, -49.0)
    far = deformation.plane(xs, xs, 50.0)
    assert a.std() > 0.3  # a field, not a constant
    assert np.abs(a - b).max() < 0.3  # 1 mm apart: nearly the same
    assert np.abs(a - far).mean() > 0.3  # 10 cm apart: another pattern
    # switching the field off changes the painted borders
    z = -50.0 * series.anatomy.patient.height_scale
    with_field = series.scanner.clean(z)[1]
    series.anatomy.deformation = None
    plain = series.scanner.clean(z)[1]
    assert (with_field != plain).mean() > 0.005


@pytest.mark.slow
def test_noise_power_spectrum_is_band_pass() -> None:
    """Filtered back-projection noise: little power near zero frequency, a peak, then
    the kernel's roll-off (not a low-pass blur)."""
    for seed in (3, 8, 11):
        series = _chest(seed, matrix=256, fov=600.0, noise=20.0)
        m = series.plan.matrix
        n = 32
        acc = np.zeros((n, n))
        for k in range(12):
            hu, labels = series.scanner.render(0.0, k)
            air = (slice(6, 6 + n), slice(m // 2 - n // 2, m // 2 + n // 2))  # before the body
            assert not labels[air].any()
            patch = hu[air] - hu[air].mean()
            acc += np.abs(np.fft.fftshift(np.fft.fft2(patch * np.outer(*[np.hanning(n)] * 2))))
        f = np.fft.fftshift(np.fft.fftfreq(n, series.plan.pixel_mm))
        fr = np.hypot(*np.meshgrid(f, f))
        edges = np.linspace(0.0, fr.max(), 9)
        radial = np.array(
            [acc[(fr >= lo) & (fr < hi)].mean() for lo, hi in itertools.pairwise(edges)]
        )
        peak = int(np.argmax(radial))
        assert 0 < peak, (seed, radial)
        assert radial[0] < 0.7 * radial[peak], (seed, radial)
