"""Scanner vendors' conventions and the values ContrastBolusAgent takes in practice."""

from __future__ import annotations

from typing import Any

# Manufacturer conventions: models, soft and sharp kernels, pixel representation
# (signed?), rescale intercept, padding outside the reconstruction circle.
SCANNERS: tuple[dict[str, Any], ...] = (
    {
        "manufacturer": "SIEMENS",
        "models": ("SOMATOM Definition AS+", "SOMATOM Force", "SOMATOM go.Up", "Biograph40_mCT"),
        "soft": ("Br36f", "B30f", "I30f", "Br38f", "B31f"),
        "sharp": ("B45f", "Br44f", "I40f", "Bv40"),
        "signed": False,
        "intercept": -1024,
        "padding": False,
    },
    {
        "manufacturer": "GE MEDICAL SYSTEMS",
        "models": ("LightSpeed VCT", "Revolution CT", "Discovery CT750 HD", "Optima CT660"),
        "soft": ("STANDARD", "SOFT"),
        "sharp": ("DETAIL", "CHEST"),
        "signed": True,
        "intercept": -1024,
        "padding": True,
    },
    {
        "manufacturer": "Philips",
        "models": ("Brilliance 64", "iCT 256", "IQon - Spectral CT", "Brilliance Big Bore"),
        # the real Philips thorax in shared/realct, kernel C, has a soft kernel's noise
        "soft": ("B", "A", "UB", "C"),
        "sharp": ("D", "YA", "YB"),
        "signed": False,
        "intercept": -1024,
        "padding": False,
    },
    {
        "manufacturer": "TOSHIBA",
        "models": ("Aquilion ONE", "Aquilion PRIME", "Aquilion Lightning"),
        "soft": ("FC03", "FC08", "FC18"),
        "sharp": ("FC13", "FC51"),
        "signed": True,
        "intercept": 0,
        "padding": False,
    },
)

AGENTS = (
    "OMNIPAQUE 350",
    "IOMERON 400",
    "ULTRAVIST 370",
    "VISIPAQUE 320",
    "IOPAMIRO 370",
    "APPLIED",
    "IV CONTRAST",
    "Yes",
    "C+",
)
NO_AGENT = ("N", "NO", "n")  # what the study's tag check read as "no contrast"

# What a PET/CT of each vendor calls itself (its CT is the low-dose attenuation scan).
PET_MODELS = {
    "SIEMENS": "Biograph40_mCT",
    "GE MEDICAL SYSTEMS": "Discovery 710",
    "Philips": "GEMINI TF TOF 64",
    "TOSHIBA": "Celesteion",
}
