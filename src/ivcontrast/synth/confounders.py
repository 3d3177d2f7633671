"""What makes a patient look enhanced without contrast, and how often each occurs.

The bundled model trained on clean phantoms called contrast on real unenhanced scans
with calcified vessel walls, calcified choroid plexus and pineal, at 100 kV, and with
the arms beside the head. Phantoms carry these confounders so that a model learns they
are not contrast. Every confounder is a :class:`~ivcontrast.synth.spec.SeriesSpec`
field (``None`` = drawn) and a plan field (the manifest row).

Patient confounders (vessel and intracranial calcium) are drawn from the anatomy seed,
so the phases of one study share them; acquisition confounders (kV, PET/CT, tilt,
brain coverage, beam hardening, a weak bolus) from the series seed. Each uses its own
generator: forcing one changes no other draw.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ivcontrast.synth.physiology import BLOOD_RANGES, ENHANCEMENT, Phase

if TYPE_CHECKING:
    from ivcontrast.synth.spec import SeriesSpec

Rng = np.random.Generator

VESSEL_CALCIUM = ("none", "mild", "heavy")
INTRACRANIAL = ("choroid_plexus", "pineal", "falx", "basal_ganglia")
BOLUS = ("normal", "weak")

# Intracranial physiological calcification: share of adults at age 20 and the yearly
# rise, capped (pineal and choroid plexus are seen in most adult head CTs).
INTRACRANIAL_RATES: dict[str, tuple[float, float, float]] = {
    # name: (rate at 20, rise per year, cap)
    "choroid_plexus": (0.25, 0.008, 0.8),
    "pineal": (0.35, 0.006, 0.75),
    "falx": (0.05, 0.004, 0.3),
    "basal_ganglia": (0.01, 0.002, 0.15),
}

# Series-level rates (per series, from the series seed).
PET_CT_RATE = {"chest": 0.12, "headneck": 0.08}
BRAIN_RATE = 0.4  # head-and-neck series that reach up into the brain (a head CT)
HEAD_ONLY_RATE = 0.5  # of those: skull base to brain only, no neck
TILT_RATE = {"brain": 0.25, "neck": 0.05}  # head CT is often tilted to spare the orbits
HEADNECK_ARMS_UP_RATE = 0.1  # arms up beside the head (PET/CT posture) outside PET/CT
PET_ARMS_UP_RATE = 0.85
WEAK_BOLUS_RATE = 0.15  # of arterial and portal-venous series
WEAK_BLOOD_HU = (130.0, 160.0)  # systemic arterial blood of a poor bolus or late venous

# HU of high-Z materials at each tube voltage relative to 120 kV:
# kVp: (bone and calcium, iodine, noise at the same dose).
KV_TABLE: dict[int, tuple[float, float, float]] = {
    70: (1.40, 1.85, 1.70),
    80: (1.30, 1.60, 1.45),
    90: (1.20, 1.40, 1.28),
    100: (1.12, 1.25, 1.15),
    110: (1.05, 1.11, 1.07),
    120: (1.00, 1.00, 1.00),
    130: (0.96, 0.92, 0.96),
    140: (0.93, 0.86, 0.92),
    150: (0.91, 0.82, 0.90),
}
KVP_CHOICES = (80, 100, 120, 140)
KVP_RATES = [0.05, 0.3, 0.55, 0.1]

# Tissue keys whose HU is calcium (scaled by the bone factor) and soft-tissue HU that
# iodine in the thyroid adds to.
CALCIUM_KEYS = (
    "cortical",
    "trabecular",
    "marrow",
    "cartilage_calcified",
    "enamel",
    "dentin",
    "calcium",
    "calcium_wall",
    "calcium_brain",
    "calcium_faint",
)
THYROID_TISSUE_HU = 45.0


def kv_factors(kvp: float) -> tuple[float, float, float]:
    """(bone, iodine, noise) factors relative to 120 kV, interpolated."""
    kvs = sorted(KV_TABLE)
    cols = list(zip(*(KV_TABLE[k] for k in kvs), strict=True))
    return tuple(float(np.interp(kvp, kvs, c)) for c in cols)  # type: ignore[return-value]


def vessel_calcium_grade(rng: Rng, age: int, calcified: bool) -> str:
    """Calcified vessel walls: the patient's plaque flag (older: more), heavy with age."""
    heavy = rng.random() < float(np.clip((age - 55) / 35.0, 0.1, 0.6))
    if not calcified:
        return "none"
    return "heavy" if heavy else "mild"


def draw_intracranial(rng: Rng, age: int) -> tuple[str, ...]:
    """Which physiological intracranial calcifications the patient has."""
    out = []
    for name in INTRACRANIAL:
        base, rise, cap = INTRACRANIAL_RATES[name]
        if rng.random() < min(base + rise * max(age - 20, 0), cap):
            out.append(name)
    return tuple(out)


def apply_weak_bolus(hu: dict[str, float], base: Mapping[str, float], rng: Rng) -> None:
    """Scale the bolus down so systemic arterial blood lands at 130-160 HU (in place).

    Veins and organs keep their ratio to the arteries: a poor bolus is poor everywhere.
    """
    blood = base["blood"]
    target = rng.uniform(*WEAK_BLOOD_HU)
    gain = hu["blood_art"] - blood
    if gain <= target - blood:
        return
    ratio = (target - blood) / gain
    for key in BLOOD_RANGES[next(iter(BLOOD_RANGES))]:
        name = f"blood_{key}"
        hu[name] = blood + (hu[name] - blood) * ratio
    for key in ENHANCEMENT[next(iter(ENHANCEMENT))]:
        hu[key] = base[key] + (hu[key] - base[key]) * ratio


def apply_kvp(hu: dict[str, float], base: Mapping[str, float], kvp: float) -> None:
    """Tube voltage: calcium, bone and iodine read higher at low kV (in place).

    HU of calcium keys scale with the bone factor; the iodine part of each enhanced
    structure (its excess over the unenhanced value) with the iodine factor; the
    thyroid's own iodine, oral contrast and excreted contrast too.
    """
    bone, iodine, _ = kv_factors(kvp)
    if bone == 1.0 and iodine == 1.0:
        return
    for key in CALCIUM_KEYS:
        if key in hu:
            hu[key] = hu[key] * bone
    blood = base["blood"]
    for key in BLOOD_RANGES[next(iter(BLOOD_RANGES))]:
        name = f"blood_{key}"
        hu[name] = blood + (hu[name] - blood) * iodine
    for key in ENHANCEMENT[next(iter(ENHANCEMENT))]:
        if key != "thyroid":
            hu[key] = base[key] + (hu[key] - base[key]) * iodine
    hu["thyroid"] = THYROID_TISSUE_HU + (hu["thyroid"] - THYROID_TISSUE_HU) * iodine
    hu["oral_contrast"] = hu["oral_contrast"] * iodine
    if hu["urine"] > 100.0:
        hu["urine"] = hu["urine"] * iodine


@dataclass(frozen=True)
class SeriesConfounders:
    """The acquisition confounders of one series, resolved (forced or drawn)."""

    pet_ct: bool
    brain: bool
    head_only: bool
    tilt: float
    arms: str | None  # None: the body's usual draw
    bolus: str
    beam_hardening: float  # before the kV factor
    brain_top: float  # nominal z
    head_bottom: float
    pet_top: float
    pet_bottom: float
    pet_thickness: float
    pet_noise: float
    pet_fov: float
    pet_mas: int


def draw_series_confounders(spec: SeriesSpec) -> SeriesConfounders:
    """Every draw in a fixed order from the series' own generator, then the forced
    values: forcing one confounder changes no other draw."""
    r = np.random.default_rng([spec.seed, 0xCF])
    chest = spec.region.value == "chest"
    d = {name: r.random() for name in ("pet", "brain", "head_only", "tilt", "arms", "bolus")}
    angle = r.uniform(8, 25) * (1.0 if r.random() < 0.7 else -1.0)
    pet = spec.pet_ct if spec.pet_ct is not None else d["pet"] < PET_CT_RATE[spec.region.value]
    brain = not chest and (spec.brain if spec.brain is not None else d["brain"] < BRAIN_RATE)
    if spec.tilt is not None:
        tilt = float(spec.tilt)
    else:
        tilted = not chest and not pet and d["tilt"] < TILT_RATE["brain" if brain else "neck"]
        tilt = float(angle) if tilted else 0.0
    arms = spec.arms
    if arms is None and (pet or not chest):
        up = PET_ARMS_UP_RATE if pet else HEADNECK_ARMS_UP_RATE
        arms = "up" if d["arms"] < up else "down"
    if not spec.phase.contrast:
        bolus = "none"
    elif spec.bolus is not None:
        bolus = spec.bolus
    else:
        weak = spec.phase in (Phase.ARTERIAL, Phase.PORTAL_VENOUS) and d["bolus"] < WEAK_BOLUS_RATE
        bolus = "weak" if weak else "normal"
    return SeriesConfounders(
        pet_ct=bool(pet),
        brain=bool(brain),
        head_only=bool(brain and d["head_only"] < HEAD_ONLY_RATE),
        tilt=tilt,
        arms=arms,
        bolus=bolus,
        beam_hardening=float(np.exp(r.uniform(np.log(0.6), np.log(1.8)))),
        brain_top=float(r.uniform(295, 322)),
        head_bottom=float(r.uniform(150, 200)),
        pet_top=float(r.uniform(200, 310)),
        pet_bottom=float(r.uniform(-60, 20)),
        pet_thickness=float((3.75, 5.0, 3.0)[int(r.choice(3, p=[0.4, 0.45, 0.15]))]),
        pet_noise=float(np.exp(r.uniform(np.log(20), np.log(55)))),
        pet_fov=float(r.uniform(450, 500)),
        pet_mas=int(r.integers(20, 80)),
    )


# Spec fields a caller may force from the command line (``--confounder KEY=VALUE``).
CONFOUNDER_FIELDS: dict[str, type] = {
    "kvp": int,
    "pet_ct": bool,
    "brain": bool,
    "vessel_calcium": str,
    "intracranial_calcium": str,
    "thyroid_hu": float,
    "bolus": str,
    "beam_hardening": float,
    "tilt": float,
    "arms": str,
}


def parse_confounder(text: str) -> tuple[str, object]:
    """``"kvp=80"`` -> ``("kvp", 80)``; raises ValueError naming the problem."""
    key, sep, value = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or key not in CONFOUNDER_FIELDS:
        raise ValueError(
            f"{text!r}: expected KEY=VALUE with KEY one of {', '.join(CONFOUNDER_FIELDS)}"
        )
    kind = CONFOUNDER_FIELDS[key]
    value = value.strip()
    if kind is bool:
        if value.lower() not in ("1", "0", "yes", "no", "true", "false"):
            raise ValueError(f"{text!r}: expected yes or no")
        return key, value.lower() in ("1", "yes", "true")
    try:
        return key, kind(value)
    except ValueError:
        raise ValueError(f"{text!r}: {value!r} is not a {kind.__name__}") from None


def rates_summary() -> dict[str, object]:
    """The draw rates, for notes and the manifest's readers."""
    return {
        "vessel_calcium": "P(any) = clip((age-35)/45, 0.05, 0.9); heavy if any: "
        "clip((age-55)/35, 0.1, 0.6)",
        "intracranial_calcium": {
            k: f"{b:g} + {r:g}/year over 20, max {c:g}"
            for k, (b, r, c) in INTRACRANIAL_RATES.items()
        },
        "kvp": dict(zip(KVP_CHOICES, KVP_RATES, strict=True)),
        "pet_ct": PET_CT_RATE,
        "brain": BRAIN_RATE,
        "tilt": TILT_RATE,
        "arms_up_headneck": HEADNECK_ARMS_UP_RATE,
        "bolus_weak": WEAK_BOLUS_RATE,
    }
