"""Tissue attenuation and the physiology of an intravenous contrast bolus, in HU.

Unenhanced values are properties of the patient (drawn once per anatomy seed, so the
phases of one study share them). Enhancement is a property of the series: the phase,
the bolus and the patient's circulation. The blood-pool targets follow the literature
and the real scans in ``shared/realct`` (unenhanced aorta 32-43 HU; portal-venous aorta
152 HU, liver 101 HU).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import numpy as np


class Phase(enum.StrEnum):
    NONE = "none"
    ARTERIAL = "arterial"
    PORTAL_VENOUS = "portal_venous"
    DELAYED = "delayed"  # late or weak enhancement: blood 100-140 HU

    @property
    def contrast(self) -> bool:
        return self is not Phase.NONE


# Labels of the label map; index = value in the map. Stable: tests and tools use names.
LABELS: tuple[str, ...] = (
    "background",
    "skin",
    "fat",
    "muscle",
    "breast",
    "lung",
    "airway",
    "airway_wall",
    "bone_cortical",
    "bone_trabecular",
    "cartilage",
    "disc",
    "teeth",
    "metal",
    "spinal_canal",
    "spinal_cord",
    "aorta",
    "arch_branch",
    "carotid",
    "vertebral_artery",
    "coronary_artery",
    "pulmonary_artery",
    "lung_artery",
    "lung_vein",
    "svc",
    "brachiocephalic_vein",
    "jugular_vein",
    "azygos",
    "ivc",
    "hepatic_vein",
    "portal_vein",
    "heart_lv",
    "heart_rv",
    "heart_la",
    "heart_ra",
    "myocardium",
    "pericardium",
    "thyroid",
    "lymph_node",
    "mucosa",
    "oesophagus",
    "oesophagus_lumen",
    "salivary_gland",
    "liver",
    "spleen",
    "kidney",
    "stomach",
    "stomach_lumen",
    "bowel",
    "brain",
    "globe",
    "calcification",
    "table",
    "dural_sinus",
    "lens",
    "ventricle",
)
LABEL: dict[str, int] = {name: i for i, name in enumerate(LABELS)}

# Blood pools whose HU is the physics the classifier must learn.
ARTERIAL_LABELS = frozenset({"aorta", "arch_branch", "carotid", "heart_lv", "heart_la"})
PULMONARY_LABELS = frozenset({"pulmonary_artery", "heart_rv"})
VENOUS_LABELS = frozenset(
    {"svc", "brachiocephalic_vein", "jugular_vein", "azygos", "ivc", "hepatic_vein", "dural_sinus"}
)
BLOOD_LABELS = ARTERIAL_LABELS | PULMONARY_LABELS | VENOUS_LABELS | {"heart_ra", "portal_vein"}

# Blood-pool HU by phase: (low, high) totals, not increments. "art" is systemic
# arterial blood, "pa" pulmonary arterial, "sv" systemic veins of the upper body
# ("sv_inj" the injected arm's vein before dilution), "ivc" the lower body's veins.
BLOOD_RANGES: dict[Phase, dict[str, tuple[float, float]]] = {
    Phase.ARTERIAL: {
        "art": (250, 450),
        "pa": (200, 400),
        "sv_inj": (300, 1400),
        "sv": (70, 170),
        "jugular": (70, 170),
        "azygos": (50, 120),
        "ivc": (45, 90),
        "hepatic": (45, 80),
        "portal": (90, 150),
    },
    Phase.PORTAL_VENOUS: {
        "art": (150, 250),
        "pa": (140, 240),
        "sv_inj": (150, 260),
        "sv": (130, 230),
        "jugular": (130, 230),
        "azygos": (120, 210),
        "ivc": (120, 210),
        "hepatic": (140, 220),
        "portal": (160, 250),
    },
    Phase.DELAYED: {
        "art": (100, 140),
        "pa": (100, 140),
        "sv_inj": (100, 150),
        "sv": (100, 140),
        "jugular": (100, 140),
        "azygos": (95, 140),
        "ivc": (100, 140),
        "hepatic": (100, 140),
        "portal": (100, 140),
    },
}

# Organ enhancement by phase: (low, high) HU added to the unenhanced value.
ENHANCEMENT: dict[Phase, dict[str, tuple[float, float]]] = {
    Phase.ARTERIAL: {
        "myocardium": (60, 120),
        "thyroid": (80, 180),
        "mucosa": (35, 90),
        "liver": (10, 30),
        "spleen": (60, 110),
        "kidney_cortex": (120, 200),
        "kidney_medulla": (10, 40),
        "muscle": (5, 15),
        "lymph": (15, 35),
        "salivary": (30, 60),
        "stomach_wall": (30, 80),
        "pericardium": (5, 20),
        "lung": (10, 25),
        "brain": (2, 6),
        "breast_gland": (10, 40),
    },
    Phase.PORTAL_VENOUS: {
        "myocardium": (50, 90),
        "thyroid": (50, 120),
        "mucosa": (30, 60),
        "liver": (40, 62),  # 95-125 HU in total, as the real upper abdomen's 101 HU
        "spleen": (60, 90),
        "kidney_cortex": (100, 160),
        "kidney_medulla": (90, 150),
        "muscle": (10, 20),
        "lymph": (20, 40),
        "salivary": (30, 60),
        "stomach_wall": (40, 70),
        "pericardium": (10, 25),
        "lung": (10, 20),
        "brain": (3, 8),
        "breast_gland": (15, 45),
    },
    Phase.DELAYED: {
        "myocardium": (25, 50),
        "thyroid": (30, 70),
        "mucosa": (15, 35),
        "liver": (25, 45),
        "spleen": (35, 55),
        "kidney_cortex": (60, 110),
        "kidney_medulla": (80, 140),
        "muscle": (5, 12),
        "lymph": (15, 30),
        "salivary": (20, 40),
        "stomach_wall": (20, 40),
        "pericardium": (10, 20),
        "lung": (5, 12),
        "brain": (2, 5),
        "breast_gland": (10, 30),
    },
}


def patient_tissues(rng: np.random.Generator) -> dict[str, float]:
    """Unenhanced HU of one patient's tissues."""
    u = rng.uniform
    blood = u(30, 50)
    fatty_liver = rng.random() < 0.15
    density = rng.choice(["low", "normal", "dense"], p=[0.25, 0.6, 0.15])
    trab = {"low": u(70, 140), "normal": u(140, 240), "dense": u(240, 330)}[str(density)]
    # iodine-rich: 80-120 HU unenhanced; a few glands (thyroiditis, low iodine) lower
    thyroid = u(55, 80) if rng.random() < 0.1 else u(80, 120)
    return {
        "air": -1000.0,
        "skin": u(20, 55),
        "fat": u(-115, -85),
        "muscle": u(30, 58),  # the real thorax in shared/realct: chest wall ~30-34 HU
        "breast_gland": u(-40, 30),
        "lung": u(-880, -820),
        "airway_wall": u(20, 60),
        "cortical": u(650, 1300),
        "trabecular": trab,
        "marrow": trab * u(0.7, 1.1),
        "cartilage": u(60, 120),
        "cartilage_calcified": u(180, 450),
        "disc": u(70, 110),
        "enamel": u(2200, 3000),
        "dentin": u(1300, 1900),
        "metal": 8000.0,
        "csf": u(2, 12),
        "cord": u(28, 40),
        "blood": blood,
        "myocardium": blood + u(3, 15),
        "pericardium": u(15, 35),
        "thyroid": thyroid,
        "lymph": u(28, 45),
        "mucosa": u(35, 50),
        "oesophagus": u(35, 50),
        "salivary": u(20, 45),
        "parotid": u(-30, 20),
        "liver": u(-5, 40) if fatty_liver else u(52, 66),
        "spleen": u(40, 52),
        "kidney_cortex": u(28, 40),
        "kidney_medulla": u(25, 35),
        "urine": u(0, 12),
        "stomach_wall": u(35, 50),
        "fluid": u(5, 20),
        "brain": u(30, 40),
        "globe": u(5, 15),
        "lens": u(90, 125),
        "calcium": u(350, 1100),
        "oral_contrast": u(250, 1200),
        "table_shell": u(150, 450),
        "table_core": u(-950, -850),
        "pad": u(-900, -700),
        "bowel_gas": -1000.0,
        "bowel_content": u(-60, 30),
        # drawn last: the values above keep their draws
        "calcium_wall": u(700, 1600),  # calcified vessel walls (rims, plaques)
        "calcium_brain": u(200, 900),  # choroid plexus, pineal, falx
        "calcium_faint": u(100, 220),  # basal ganglia
    }


def series_tissues(
    base: Mapping[str, float], phase: Phase, rng: np.random.Generator, injected_dense: bool
) -> dict[str, float]:
    """HU of every tissue key for one series: the patient's values plus the bolus.

    One bolus-strength draw ``q`` is shared by all blood pools and organs, so a weak
    bolus is weak everywhere, as in a real patient; each structure adds its own jitter.
    """
    hu = dict(base)
    blood = base["blood"]
    if phase is Phase.NONE:
        for key in ("art", "pa", "sv_inj", "sv", "jugular", "azygos", "ivc", "hepatic", "portal"):
            hu[f"blood_{key}"] = blood + rng.uniform(-2, 2)
        return hu
    q = rng.uniform(0.0, 1.0)

    def draw(lo: float, hi: float) -> float:
        w = float(np.clip(q + rng.normal(0.0, 0.15), 0.0, 1.0))
        return lo + (hi - lo) * w

    for key, (lo, hi) in BLOOD_RANGES[phase].items():
        hu[f"blood_{key}"] = draw(lo, hi)
    if not injected_dense:
        hu["blood_sv_inj"] = max(hu["blood_sv"], hu["blood_pa"] * rng.uniform(0.85, 1.0))
    for key, (lo, hi) in ENHANCEMENT[phase].items():
        hu[key] = base[key] + draw(lo, hi)
    if phase is Phase.DELAYED and rng.random() < 0.5:
        hu["urine"] = rng.uniform(200, 1200)  # excreted contrast in the collecting system
    return hu


TEXTURE_AMPLITUDE: dict[str, tuple[float, float]] = {
    # label: (fine, coarse) texture amplitude in HU: fat septa, muscle fibres, lung
    # microvessels, trabecular bone, mixing of dense and plain blood. The coarse field
    # mixes a 6 mm and a 20 mm grain: organs are a few HU uneven beneath the noise.
    "fat": (6.0, 10.0),
    "muscle": (4.0, 7.0),
    "breast": (10.0, 15.0),
    "lung": (15.0, 12.0),
    "bone_trabecular": (45.0, 30.0),
    "liver": (3.0, 6.0),
    "spleen": (3.0, 7.0),
    "kidney": (5.0, 9.0),
    "myocardium": (2.0, 4.0),
    "oesophagus": (3.0, 5.0),
    "stomach": (4.0, 6.0),
    "thyroid": (8.0, 10.0),
    "brain": (2.0, 3.0),
    "salivary_gland": (8.0, 10.0),
    "lymph_node": (3.0, 4.0),
    "stomach_lumen": (10.0, 20.0),
    "bowel": (30.0, 40.0),
    "heart_ra": (0.0, 0.0),
    "svc": (0.0, 0.0),
}
