"""The one preprocessing: slice choice by mm, body mask, crop, resize, HU windows."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from test_classifier_dicom import make_phantom

from ivcontrast.classifier.errors import VolumeError
from ivcontrast.classifier.preprocess import (
    PREPROCESS_ALGORITHM,
    PreprocessConfig,
    apply_windows,
    body_masks,
    plan_samples,
    prepare_slices,
    preprocess,
)
from ivcontrast.classifier.volume import Volume


def disc_volume(
    n: int = 8,
    matrix: int = 128,
    fov_mm: float = 400.0,
    radius_mm: float = 120.0,
    hu: float = 100.0,
    table: bool = False,
    slice_mm: float = 2.0,
) -> Volume:
    """A uniform disc of ``hu`` centred in the field of view, optionally on a table."""
    spacing = fov_mm / matrix
    centre = (np.arange(matrix) + 0.5) * spacing - fov_mm / 2
    yy, xx = np.meshgrid(centre, centre, indexing="ij")
    plane = np.where(yy**2 + xx**2 <= radius_mm**2, hu, -1000.0)
    if table:
        plane[(yy > radius_mm + 8) & (yy < radius_mm + 12) & (np.abs(xx) < 150)] = 200.0
    return Volume.axial(
        np.repeat(plane[None], n, axis=0).astype(np.float32),
        (spacing, spacing),
        np.arange(n) * slice_mm,
    )


def test_config_json_round_trip_and_validation() -> None:
    config = PreprocessConfig(size=96, num_slices=12, windows=((-100, 100), (0, 300)), slab_mm=3)
    data = json.loads(config.to_json())
    assert data["algorithm"] == PREPROCESS_ALGORITHM
    assert data["windows"] == [[-100.0, 100.0], [0.0, 300.0]]
    assert PreprocessConfig.from_json(config.to_json()) == config
    assert config.channels == 2
    with pytest.raises(ValueError, match="algorithm"):
        PreprocessConfig.from_dict({**data, "algorithm": PREPROCESS_ALGORITHM + 1})
    with pytest.raises(ValueError, match="unknown preprocessing parameters: colour"):
        PreprocessConfig.from_dict({**data, "colour": 1})
    with pytest.raises(ValueError, match="low < high"):
        PreprocessConfig(windows=((100, -100),))
    with pytest.raises(ValueError, match="size 4 < 16"):
        PreprocessConfig(size=4)


def test_positions_are_spread_by_mm_not_by_index() -> None:
    """A 0.625 mm and a 5 mm series of the same 300 mm sample the same positions."""
    thin = np.arange(0, 300.001, 0.625)
    thick = np.arange(0, 300.001, 5.0)
    z_thin = thin[np.concatenate(plan_samples(thin, 16))]
    z_thick = thick[np.concatenate(plan_samples(thick, 16))]
    assert len(z_thin) == len(z_thick) == 16
    assert np.max(np.abs(z_thin - z_thick)) <= 2.5
    assert np.allclose(np.diff(z_thin), 300 / 16, atol=1.0)
    # Uneven spacing (a gap) does not bunch the samples.
    gapped = np.concatenate([np.arange(0, 100, 1.0), np.arange(200, 300, 1.0)])
    z = gapped[np.concatenate(plan_samples(gapped, 10))]
    assert len(np.unique(z)) >= 8


def test_every_slice_and_slabs() -> None:
    z = np.arange(10) * 2.0
    assert [g.tolist() for g in plan_samples(z, 0)] == [[i] for i in range(10)]
    assert len(plan_samples(z, 50)) == 10
    slabs = plan_samples(np.arange(0, 20, 0.5), 4, slab_mm=2.0)
    assert all(len(g) == 5 for g in slabs)  # +-1 mm around each centre
    with pytest.raises(VolumeError):
        plan_samples(np.array([]), 4)


def test_windows_map_fixed_hu_to_fixed_values() -> None:
    config = PreprocessConfig(size=32, num_slices=2)
    model_input = preprocess(disc_volume(hu=100.0, radius_mm=150), config)
    centre = model_input.x[:, :, 12:20, 12:20]
    expected = [(100 + 200) / 400, (100 + 50) / 400, (100 + 1000) / 2000]
    for c, value in enumerate(expected):
        np.testing.assert_allclose(centre[:, c], value, atol=1e-5)
    corner = model_input.x[:, :, 0, 0]  # air
    np.testing.assert_allclose(corner, [[0, 0, 0]] * 2)
    # The resized HU are kept, and windowing them again gives the same input.
    np.testing.assert_allclose(model_input.hu[:, 12:20, 12:20], 100.0, atol=1e-3)
    np.testing.assert_array_equal(apply_windows(model_input.hu, config.windows), model_input.x)
    assert apply_windows(np.array([[[-300.0, 0.0], [150.0, 2000.0]]]), [(-200, 200)]).tolist() == [
        [[[0.0, 0.5], [0.875, 1.0]]]
    ]


def test_crop_centres_the_body_and_scales_by_its_size() -> None:
    config = PreprocessConfig(size=64, num_slices=2, crop_margin_mm=10)
    small = preprocess(disc_volume(radius_mm=60), config)
    large = preprocess(disc_volume(radius_mm=160), config)
    for model_input in (small, large):
        body = model_input.x[0, 0] > 0.5
        rows, cols = np.nonzero(body)
        assert abs(rows.mean() - 31.5) < 1.0 and abs(cols.mean() - 31.5) < 1.0
        # The body fills the crop up to the margin, whatever its size.
        assert body.any(axis=1).sum() >= 64 * 0.8
    np.testing.assert_allclose(small.pixel_mm, (120 + 20) / 64, rtol=0.05)
    np.testing.assert_allclose(large.pixel_mm, (320 + 20) / 64, rtol=0.05)
    np.testing.assert_allclose(small.body_area_mm2, np.pi * 60**2, rtol=0.1)


def test_same_anatomy_at_other_matrix_and_field_of_view_gives_the_same_input() -> None:
    config = PreprocessConfig(size=64, num_slices=2)
    a = preprocess(disc_volume(matrix=512, fov_mm=400), config)
    b = preprocess(disc_volume(matrix=256, fov_mm=480), config)
    assert np.mean(np.abs(a.x - b.x)) < 0.01


def test_table_is_removed() -> None:
    config = PreprocessConfig(size=64, num_slices=2, crop_margin_mm=30)
    volume = disc_volume(radius_mm=100, table=True, matrix=256)
    hu = volume.read([0])
    masks, stride = body_masks(hu, volume.geometry.pixel_spacing, config)
    spacing = volume.geometry.pixel_spacing[0] * stride[0]
    assert masks[0].sum() * spacing**2 == pytest.approx(np.pi * 100**2, rel=0.1)
    model_input = preprocess(volume, config)
    # The table lies 8-12 mm below the body, inside the 30 mm margin: it must read as air.
    assert model_input.x[0, 0, 58:, :].max() == 0.0
    with_table = preprocess(volume, replace(config, table_removal_mm=0.5))
    assert with_table.x[0, 0, 50:, :].max() > 0.5


def test_slices_without_body_are_dropped() -> None:
    volume = disc_volume(n=10)
    hu = volume.hu.copy()
    hu[:3] = -1000.0  # air above the head
    hu[3, :, :] = -1000.0
    hu[3, 60:64, 60:64] = 40.0  # a sliver of tissue: too small to count
    source = Volume(hu, volume.geometry)
    model_input = preprocess(source, PreprocessConfig(size=32, num_slices=0))
    assert model_input.candidates == 10
    assert model_input.slice_indices.tolist() == [4, 5, 6, 7, 8, 9]
    np.testing.assert_allclose(model_input.z_mm, volume.geometry.z_mm[4:])
    assert model_input.source_slices == 10
    with pytest.raises(VolumeError, match="none of 10 sampled slices"):
        preprocess(
            Volume(np.full_like(hu, -1000.0), volume.geometry), PreprocessConfig(num_slices=0)
        )


def test_chunked_reading_matches_one_pass() -> None:
    hu = make_phantom(n=70, rows=48, cols=48).astype(np.float32)
    volume = Volume.axial(hu, (4.0, 4.0), np.arange(70) * 1.0)
    config = PreprocessConfig(size=32, num_slices=0, min_body_area_mm2=100)
    model_input = preprocess(volume, config)
    direct = prepare_slices(hu, (4.0, 4.0), config)
    assert model_input.n_slices == 70
    np.testing.assert_array_equal(model_input.x, direct.x)
    assert model_input.x.dtype == np.float32
    assert model_input.x.shape == (70, 3, 32, 32)
    assert model_input.read_seconds >= 0 and model_input.prepare_seconds > 0


def test_slab_averages_neighbours() -> None:
    rng = np.random.default_rng(1)
    volume = disc_volume(n=40, slice_mm=0.5, hu=60.0, radius_mm=150)
    noisy = Volume(
        volume.hu + rng.normal(0, 40, volume.hu.shape).astype(np.float32), volume.geometry
    )
    config = PreprocessConfig(size=32, num_slices=4, windows=((-200, 200),))
    single = preprocess(noisy, config).x[:, 0, 10:22, 10:22]
    slab = preprocess(noisy, replace(config, slab_mm=4.0)).x[:, 0, 10:22, 10:22]
    assert slab.std() < single.std() * 0.6
    assert abs(slab.mean() - single.mean()) < 0.01
