"""Augmentation in HU and windowing, batched on the training device (needs torch).

Batches are the cropped, resized HU that preprocessing keeps (``ModelInput.hu``); augmentation
works on HU, then ``window`` makes the model input exactly as ``apply_windows`` does.

Geometric: small rotations, shifts and scaling and left-right flips (patients lie a little
askew, off centre and in all sizes; left and right are near mirror images, front and back are
not, so there are no up-down flips). Pixels that come from outside the image are air.

Intensity: only what scanners themselves do to HU. The whole image is offset by up to
``hu_offset`` HU (calibration tolerance, +-10 HU) and gets white noise of up to ``noise_hu`` HU.
There is no contrast stretching or gamma: the HU of blood is the signal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ivcontrast.classifier.volume import AIR_HU

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class AugmentConfig:
    rotate_deg: float = 10.0  # uniform in +-rotate_deg
    shift: float = 0.06  # uniform in +-shift of the image side, per axis
    scale: float = 0.1  # zoom uniform in 1 +- scale
    flip_lr: float = 0.5  # probability of a left-right flip
    geometric_p: float = 0.8  # probability that an image is moved at all
    hu_offset: float = 10.0  # uniform in +-hu_offset HU
    noise_hu: float = 6.0  # noise sigma uniform in [0, noise_hu] HU

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value < 0:
                raise ValueError(f"augmentation {name} {value} < 0")
        for name in ("flip_lr", "geometric_p"):
            if getattr(self, name) > 1:
                raise ValueError(f"augmentation {name} {getattr(self, name)} > 1")
        if self.scale >= 1:
            raise ValueError(f"augmentation scale {self.scale} >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


NO_AUGMENTATION = AugmentConfig(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def window(hu: torch.Tensor, windows: Sequence[tuple[float, float]]) -> torch.Tensor:
    """HU (N, 1, S, S) to the model input (N, len(windows), S, S): the torch twin of
    ``classifier.preprocess.apply_windows`` (a test holds them equal)."""
    import torch

    lo = torch.tensor([w[0] for w in windows], device=hu.device, dtype=hu.dtype).view(1, -1, 1, 1)
    hi = torch.tensor([w[1] for w in windows], device=hu.device, dtype=hu.dtype).view(1, -1, 1, 1)
    return ((hu - lo) / (hi - lo)).clamp(0.0, 1.0)


def augment(hu: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """An augmented copy of the HU batch ``hu`` (N, 1, S, S).

    ``generator`` lives on ``hu``'s device and makes the draws reproducible.
    """
    import torch
    import torch.nn.functional as F

    n = hu.shape[0]
    if n == 0:
        return hu
    device, dtype = hu.device, hu.dtype

    def uniform(low: float, high: float, size: tuple[int, ...] = (n,)) -> torch.Tensor:
        return low + (high - low) * torch.rand(
            size, generator=generator, device=device, dtype=dtype
        )

    out = hu
    if config.hu_offset > 0 or config.noise_hu > 0:
        change = uniform(-config.hu_offset, config.hu_offset).view(n, 1, 1, 1)
        if config.noise_hu > 0:
            sigma = uniform(0.0, config.noise_hu).view(n, 1, 1, 1)
            noise = torch.randn(hu.shape, generator=generator, device=device, dtype=dtype)
            change = change + sigma * noise
        # Air stays air: outside the body there is nothing for the scanner to offset.
        out = torch.where(out > AIR_HU, torch.clamp(out + change, min=AIR_HU), out)
    if config.geometric_p > 0:
        angle = uniform(-1.0, 1.0) * math.radians(config.rotate_deg)
        zoom = 1.0 / uniform(1.0 - config.scale, 1.0 + config.scale)
        flip = torch.where(uniform(0.0, 1.0) < config.flip_lr, -1.0, 1.0).to(dtype)
        shift = uniform(-2 * config.shift, 2 * config.shift, (n, 2))  # grid units: side = 2
        moved = uniform(0.0, 1.0) < config.geometric_p
        angle = torch.where(moved, angle, torch.zeros_like(angle))
        zoom = torch.where(moved, zoom, torch.ones_like(zoom))
        flip = torch.where(moved, flip, torch.ones_like(flip))
        shift = torch.where(moved[:, None], shift, torch.zeros_like(shift))
        cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
        theta = torch.stack(
            [
                torch.stack([cos * flip, -sin, shift[:, 0]], dim=1),
                torch.stack([sin * flip, cos, shift[:, 1]], dim=1),
            ],
            dim=1,
        )
        grid = F.affine_grid(theta, list(out.shape), align_corners=False)
        # grid_sample pads with zeros: sample HU above air, so that the padding is air.
        out = (
            F.grid_sample(
                out - AIR_HU, grid, mode="bilinear", padding_mode="zeros", align_corners=False
            )
            + AIR_HU
        )
    return out
