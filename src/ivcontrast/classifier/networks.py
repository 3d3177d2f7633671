"""The contrast networks: MONAI's 2-D EfficientNet B0-B4 with a one-logit head (needs torch).

MONAI's EfficientNetBN already ends in global average pooling, dropout and a linear layer; with
``num_classes=1`` that is the small head we want. Weights start random (``pretrained=False``):
nothing is downloaded at run time. The network takes any input size; multiples of 32 keep
every stride-2 "same" padding symmetric.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

ARCHITECTURES = tuple(f"efficientnet-b{i}" for i in range(5))


def build_network(arch: str, in_channels: int = 3, dropout: float = 0.2) -> nn.Module:
    """A randomly initialised 2-D EfficientNet (``arch`` in ``ARCHITECTURES``) -> (N, 1) logits."""
    from monai.networks.nets import EfficientNetBN
    from torch import nn

    if arch not in ARCHITECTURES:
        raise ValueError(f"architecture {arch!r}: expected one of {', '.join(ARCHITECTURES)}")
    if in_channels < 1:
        raise ValueError(f"in_channels {in_channels} < 1")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout {dropout} not in [0, 1)")
    net = EfficientNetBN(
        arch, pretrained=False, spatial_dims=2, in_channels=in_channels, num_classes=1
    )
    # EfficientNetBN fixes dropout per architecture; the head's rate is ours to choose.
    net._dropout = nn.Dropout(dropout)
    return net


def exportable(net: nn.Module) -> nn.Module:
    """``net`` switched to the plain swish activation that exporters can trace (in place).

    MONAI's default memory-efficient swish is a custom autograd function, for training only.
    """
    net.set_swish(memory_efficient=False)  # type: ignore[operator]
    return net
