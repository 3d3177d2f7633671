"""What the DICOM ContrastBolusAgent tag (0018,0010) claims, read as the study read it.

Ye et al. (2021): absent or empty = missing; 'N', 'n', 'NO' (any case, also 'NONE') = no
contrast; anything else = contrast.
"""

from __future__ import annotations

NEGATIVE_VALUES = {"N", "NO", "NONE"}


def tag_says_contrast(value: str | None) -> bool | None:
    """True/False for what the tag claims; None when the tag is missing or empty."""
    if value is None or not value.strip():
        return None
    return value.strip().upper() not in NEGATIVE_VALUES


def tag_status(value: str | None, predicted_contrast: bool) -> str:
    """'missing', 'agrees' or 'disagrees' (the values of store.models.TagStatus)."""
    claimed = tag_says_contrast(value)
    if claimed is None:
        return "missing"
    return "agrees" if claimed == predicted_contrast else "disagrees"
