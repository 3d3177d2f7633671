"""Augmentation in HU and the torch windowing, against the classifier's ``apply_windows``."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ivcontrast.classifier.preprocess import PreprocessConfig, apply_windows  # noqa: E402
from ivcontrast.classifier.volume import AIR_HU  # noqa: E402
from ivcontrast.training.augment import NO_AUGMENTATION, AugmentConfig, augment, window  # noqa: E402

WINDOWS = PreprocessConfig().windows


def phantom(n: int = 4, size: int = 32) -> torch.Tensor:
    """Air around a soft-tissue disc with a bright vessel."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    hu = np.where(r < size * 0.4, 40.0, AIR_HU)
    hu[(yy - size / 2) ** 2 + (xx - size / 3) ** 2 < 9] = 300.0
    return torch.from_numpy(np.repeat(hu[None, None], n, axis=0).astype(np.float32))


def gen(seed: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_window_is_apply_windows() -> None:
    hu = np.random.default_rng(0).uniform(-1100, 1500, (3, 1, 16, 16)).astype(np.float32)
    expected = apply_windows(hu[:, 0], WINDOWS)
    np.testing.assert_allclose(window(torch.from_numpy(hu), WINDOWS).numpy(), expected, atol=1e-6)


def test_no_augmentation_is_the_identity() -> None:
    hu = phantom()
    assert torch.equal(augment(hu, NO_AUGMENTATION, gen()), hu)


def test_hu_offset_is_within_tolerance_and_air_stays_air() -> None:
    hu = phantom(64)
    config = AugmentConfig(geometric_p=0.0, hu_offset=10.0, noise_hu=0.0)
    out = augment(hu, config, gen(1))
    body = hu > AIR_HU
    change = (out - hu)[body].reshape(64, -1)
    # One offset per image, the same on every body pixel, within +-10 HU.
    assert torch.allclose(change, change[:, :1].expand_as(change), atol=1e-4)
    assert change.abs().max() <= 10.0 + 1e-4
    assert change[:, 0].std() > 3.0  # offsets really vary
    assert torch.equal(out[~body], hu[~body])


def test_noise_has_the_drawn_sigma() -> None:
    hu = torch.full((200, 1, 32, 32), 40.0)
    out = augment(hu, AugmentConfig(geometric_p=0.0, hu_offset=0.0, noise_hu=6.0), gen(2))
    sigma = (out - hu).reshape(200, -1).std(dim=1)
    assert 0.0 <= float(sigma.min()) and float(sigma.max()) <= 6.5
    assert abs(float(sigma.mean()) - 3.0) < 0.5  # sigma ~ U(0, 6)


def test_left_right_flip_is_exact() -> None:
    hu = phantom(2)
    config = AugmentConfig(
        rotate_deg=0, shift=0, scale=0, flip_lr=1.0, geometric_p=1.0, hu_offset=0, noise_hu=0
    )
    out = augment(hu, config, gen())
    torch.testing.assert_close(out, hu.flip(-1), atol=1e-3, rtol=0)


def test_pixels_from_outside_are_air() -> None:
    hu = torch.full((8, 1, 32, 32), 40.0)
    config = AugmentConfig(
        rotate_deg=0, shift=0.2, scale=0, flip_lr=0, geometric_p=1.0, hu_offset=0, noise_hu=0
    )
    out = augment(hu, config, gen(3))
    assert float(out.min()) == pytest.approx(AIR_HU, abs=1e-3)
    assert float(out.max()) == pytest.approx(40.0, abs=1e-3)


def test_vessels_keep_their_enhancement_under_default_augmentation() -> None:
    """Rotation and shifts move the bright vessel, but never bring it below enhancement."""
    hu = phantom(32)
    out = augment(hu, AugmentConfig(), gen(4))
    peak = out.reshape(32, -1).max(dim=1).values
    assert float(peak.min()) > 200.0  # 300 HU vessel: interpolation + offset + noise only
    same = augment(hu, AugmentConfig(), gen(4))
    assert torch.equal(out, same)  # reproducible from the generator


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="hu_offset"):
        AugmentConfig(hu_offset=-1)
    with pytest.raises(ValueError, match="flip_lr"):
        AugmentConfig(flip_lr=2)
