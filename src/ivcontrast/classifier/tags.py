"""What the DICOM ContrastBolusAgent tag (0018,0010) claims, compared with the model's call.

The reading rule (Ye et al. 2021: absent or empty = missing; 'N', 'NO', 'NONE' in any case =
no contrast; anything else = contrast) lives in ``ivcontrast.vocabulary``.
"""

from __future__ import annotations

from ivcontrast.vocabulary import TagStatus, tag_says_contrast

__all__ = ["tag_says_contrast", "tag_status"]


def tag_status(value: str | None, predicted_contrast: bool) -> TagStatus:
    """missing, agrees or disagrees."""
    claimed = tag_says_contrast(value)
    if claimed is None:
        return TagStatus.MISSING
    return TagStatus.AGREES if claimed == predicted_contrast else TagStatus.DISAGREES
