"""PNG montages of synthetic (or any) CT slices for a person to look at."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def window(hu: np.ndarray, level: float = 40.0, width: float = 400.0) -> np.ndarray:
    """HU -> uint8 grey values with a display window (default soft tissue W400/L40)."""
    lo = level - width / 2
    return (np.clip((hu - lo) / width, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def montage(
    slices: Sequence[np.ndarray],
    captions: Sequence[str] | None = None,
    title: str = "",
    columns: int = 4,
    tile: int = 256,
    level: float = 40.0,
    width: float = 400.0,
) -> Image.Image:
    """Tiles of windowed slices with an optional caption under each and a title on top
    (one line per line of ``title``)."""
    if not slices:
        raise ValueError("montage: no slices")
    columns = max(1, min(columns, len(slices)))
    rows = (len(slices) + columns - 1) // columns
    lines = title.split("\n") if title else []
    head = 18 + 13 * (len(lines) - 1) if lines else 0
    foot = 14 if captions else 0
    sheet = Image.new("L", (columns * tile, head + rows * (tile + foot)), 0)
    draw = ImageDraw.Draw(sheet)
    for k, line in enumerate(lines):
        draw.text((4, 3 + 13 * k), line, fill=255)
    for i, hu in enumerate(slices):
        img = Image.fromarray(window(hu, level, width)).resize(
            (tile, tile), Image.Resampling.BILINEAR
        )
        x = (i % columns) * tile
        y = head + (i // columns) * (tile + foot)
        sheet.paste(img, (x, y))
        if captions:
            draw.text((x + 3, y + tile + 1), captions[i], fill=200)
    return sheet


def save_montage(path: str | Path, slices: Sequence[np.ndarray], **kwargs: object) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    montage(slices, **kwargs).save(out)  # type: ignore[arg-type]
    return out
