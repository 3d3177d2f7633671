"""What to generate (:class:`SeriesSpec`) and everything drawn for it (:class:`SeriesPlan`).

A spec names the few things a caller cares about; every field left ``None`` is drawn
from the seed. :func:`plan_series` resolves a spec into a plan: every number that shapes
the pixels and the header, which is also the manifest row.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from ivcontrast.synth.anatomy import Anatomy, Extras, build_anatomy
from ivcontrast.synth.confounders import (
    BOLUS,
    INTRACRANIAL,
    KVP_CHOICES,
    KVP_RATES,
    VESSEL_CALCIUM,
    SeriesConfounders,
    draw_series_confounders,
    kv_factors,
)
from ivcontrast.synth.identity import series_identity
from ivcontrast.synth.physiology import Phase, patient_tissues
from ivcontrast.synth.vendors import AGENTS, NO_AGENT, PET_MODELS, SCANNERS


class Region(enum.StrEnum):
    CHEST = "chest"
    HEADNECK = "headneck"


class TagState(enum.StrEnum):
    """What ContrastBolusAgent (0018,0010) says, relative to the truth."""

    CORRECT = "correct"
    MISSING = "missing"
    WRONG = "wrong"


class SeriesKind(enum.StrEnum):
    AXIAL = "axial"
    LOCALIZER = "localizer"


class SopClass(enum.StrEnum):
    CT = "ct"  # CT Image Storage
    SC = "sc"  # Secondary Capture Image Storage (a screenshot of CT)
    MR = "mr"  # MR Image Storage (not CT at all)


TRANSFER_SYNTAXES: dict[str, str] = {
    "explicit": "1.2.840.10008.1.2.1",
    "implicit": "1.2.840.10008.1.2",
    "rle": "1.2.840.10008.1.2.5",
    "jpeg2000": "1.2.840.10008.1.2.4.90",
    "jpegls": "1.2.840.10008.1.2.4.80",
}

# The study behind this project found ContrastBolusAgent missing or wrong in 75.6% of
# scans; by default the tags are correct in 24.4%, missing in 60% and wrong in 15.6%.
DEFAULT_TAG_RATES: tuple[float, float, float] = (0.244, 0.6, 0.156)

PATIENT_POSITIONS = ("HFS", "FFS", "HFP", "FFP")


@dataclass(frozen=True)
class SeriesSpec:
    """What to generate. ``None`` fields are drawn from ``seed``.

    ``anatomy_seed`` picks the patient (body, organs, vessels); series that share it
    show the same patient in one study, e.g. the phases of a multi-phase exam.
    ``tag`` forces what ContrastBolusAgent says; otherwise it is drawn with
    ``tag_rates`` = (correct, missing, wrong).
    """

    region: Region = Region.CHEST
    phase: Phase = Phase.NONE
    seed: int = 0
    anatomy_seed: int | None = None
    matrix: int | None = None
    slices: int | None = None
    thickness: float | None = None
    spacing: float | None = None
    fov: float | None = None
    noise: float | None = None
    tag: TagState | None = None
    tag_rates: tuple[float, float, float] = DEFAULT_TAG_RATES
    kind: SeriesKind = SeriesKind.AXIAL
    sop_class: SopClass = SopClass.CT
    image_type: tuple[str, ...] | None = None
    modality: str | None = None
    transfer_syntax: str = "explicit"
    signed: bool | None = None
    rescale_intercept: int | None = None
    patient_position: str | None = None
    tilt: float | None = None
    reverse: bool = False
    arms: str | None = None
    manufacturer: str | None = None
    # Confounders (synth.confounders has their rates): None = drawn. ``brain`` applies
    # to head-and-neck series, ``bolus`` to contrast series (the plan says "none" else).
    kvp: int | None = None
    pet_ct: bool | None = None
    brain: bool | None = None
    vessel_calcium: str | None = None
    intracranial_calcium: tuple[str, ...] | None = None
    thyroid_hu: float | None = None
    bolus: str | None = None
    beam_hardening: float | None = None

    def __post_init__(self) -> None:
        coerce = {
            "region": Region,
            "phase": Phase,
            "kind": SeriesKind,
            "sop_class": SopClass,
        }
        for name, cls in coerce.items():
            object.__setattr__(self, name, cls(getattr(self, name)))
        if self.tag is not None:
            object.__setattr__(self, "tag", TagState(self.tag))
        if self.image_type is not None:
            object.__setattr__(self, "image_type", tuple(self.image_type))
        calcs = self.intracranial_calcium
        if isinstance(calcs, str):  # "choroid_plexus+pineal", "none" or ""
            calcs = () if calcs in ("", "none") else calcs.replace(",", "+").split("+")
        if calcs is not None:
            object.__setattr__(self, "intracranial_calcium", tuple(calcs))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field when the spec cannot be generated."""
        if self.matrix is not None and not 16 <= self.matrix <= 1024:
            raise ValueError(f"matrix: {self.matrix} is outside 16..1024")
        if self.slices is not None and not 1 <= self.slices <= 2000:
            raise ValueError(f"slices: {self.slices} is outside 1..2000")
        for name in ("thickness", "spacing", "fov"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name}: must be positive, got {value}")
        if self.noise is not None and not 0 <= self.noise <= 200:
            raise ValueError(f"noise: {self.noise} HU is outside 0..200")
        if self.transfer_syntax not in TRANSFER_SYNTAXES:
            raise ValueError(
                f"transfer_syntax: {self.transfer_syntax!r} is not one of "
                f"{', '.join(TRANSFER_SYNTAXES)}"
            )
        if self.transfer_syntax in ("rle", "jpeg2000", "jpegls"):
            from pydicom.pixels import get_encoder

            if not get_encoder(TRANSFER_SYNTAXES[self.transfer_syntax]).is_available:
                raise ValueError(
                    f"transfer_syntax: no encoder for {self.transfer_syntax} is installed "
                    "(pylibjpeg-rle, pylibjpeg-openjpeg or pyjpegls)"
                )
        if self.rescale_intercept not in (None, -1024, -1000, 0):
            raise ValueError(
                f"rescale_intercept: {self.rescale_intercept} is not -1024, -1000 or 0"
            )
        if self.rescale_intercept == 0 and self.signed is False:
            raise ValueError("rescale_intercept 0 needs signed pixels (HU below 0)")
        if self.patient_position not in (None, *PATIENT_POSITIONS):
            raise ValueError(
                f"patient_position: {self.patient_position!r} is not one of {PATIENT_POSITIONS}"
            )
        if self.tilt is not None and not -30.0 <= self.tilt <= 30.0:
            raise ValueError(f"tilt: {self.tilt} degrees is outside -30..30")
        self._validate_confounders()
        if self.arms not in (None, "up", "down"):
            raise ValueError(f"arms: {self.arms!r} is not 'up' or 'down'")
        rates = self.tag_rates
        if len(rates) != 3 or min(rates) < 0 or abs(sum(rates) - 1.0) > 1e-6:
            raise ValueError(f"tag_rates: {rates} must be three non-negative rates summing to 1")
        names = [s["manufacturer"] for s in SCANNERS]
        if self.manufacturer is not None and self.manufacturer not in names:
            raise ValueError(f"manufacturer: {self.manufacturer!r} is not one of {names}")

    def _validate_confounders(self) -> None:
        if self.kvp is not None and not 70 <= self.kvp <= 150:
            raise ValueError(f"kvp: {self.kvp} is outside 70..150")
        if self.vessel_calcium not in (None, *VESSEL_CALCIUM):
            raise ValueError(
                f"vessel_calcium: {self.vessel_calcium!r} is not one of {VESSEL_CALCIUM}"
            )
        unknown = set(self.intracranial_calcium or ()) - set(INTRACRANIAL)
        if unknown:
            raise ValueError(f"intracranial_calcium: {sorted(unknown)} not in {INTRACRANIAL}")
        if self.thyroid_hu is not None and not 0 <= self.thyroid_hu <= 400:
            raise ValueError(f"thyroid_hu: {self.thyroid_hu} is outside 0..400")
        if self.bolus not in (None, *BOLUS):
            raise ValueError(f"bolus: {self.bolus!r} is not one of {BOLUS}")
        if self.beam_hardening is not None and not 0 <= self.beam_hardening <= 5:
            raise ValueError(f"beam_hardening: {self.beam_hardening} is outside 0..5")


@dataclass(frozen=True)
class SeriesPlan:
    """Every drawn value of one series: the generator's input and the manifest row."""

    region: str
    phase: str
    contrast: bool
    seed: int
    anatomy_seed: int
    kind: str
    sop_class: str
    modality: str
    image_type: tuple[str, ...]
    matrix: int
    slices: int
    thickness: float
    spacing: float
    pixel_mm: float
    fov_mm: float
    centre_x: float
    centre_y: float
    z_top: float  # anatomy z of the first (highest) slice centre
    z_offset: float  # DICOM z = anatomy z + z_offset
    noise_sigma: float
    noise_cutoff: float
    blur_mm: float
    kernel: str
    manufacturer: str
    model: str
    kvp: int
    mas: int
    hu_offset: float
    cupping: float
    fov_circle: str
    table: str
    table_gap: float
    table_shell: float
    patient_position: str
    tilt: float
    reverse: bool
    transfer_syntax: str
    signed: bool
    rescale_intercept: int
    bits_stored: int
    tag_state: str
    tag_value: str | None
    arms: str
    oral_contrast: bool
    injected_dense: bool
    study_uid: str
    series_uid: str
    frame_uid: str
    study_date: str
    study_time: str
    series_time: str
    series_number: int
    patient_id: str
    patient_name: str
    birth_date: str
    accession: str
    window: tuple[float, float]
    # confounders (synth.confounders)
    pet_ct: bool = False
    brain: bool = False
    bolus: str = "none"
    beam_hardening: float = 1.0
    thyroid_hu: float = 100.0
    vessel_calcium: str = "none"
    intracranial_calcium: tuple[str, ...] = ()
    patient: dict[str, Any] = field(default_factory=dict)

    def manifest_row(self) -> dict[str, Any]:
        """Flat values for the CSV manifest."""
        row = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "patient"}
        row["image_type"] = "\\".join(self.image_type)
        row["window"] = f"{self.window[0]:g}/{self.window[1]:g}"
        row["tag_value"] = "" if self.tag_value is None else self.tag_value
        row["tag_present"] = self.tag_value is not None
        row["intracranial_calcium"] = "+".join(self.intracranial_calcium) or "none"
        row.update({f"patient_{k}": v for k, v in self.patient.items()})
        return row

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _choice(
    rng: np.random.Generator, options: tuple[Any, ...] | list[Any], p: list[float] | None = None
) -> Any:
    return options[int(rng.choice(len(options), p=p))]


def _coverage(
    spec: SeriesSpec, rng: np.random.Generator, c: SeriesConfounders, h: float
) -> tuple[float, float]:
    """Top and bottom (anatomy z) of the region the series covers."""
    if spec.region is Region.CHEST:
        top, bottom = (70 + rng.uniform(5, 35)) * h, rng.uniform(-265, -195) * h
        if c.pet_ct:
            top = c.pet_top * h  # PET/CT: from the chest up into the head
        return top, bottom
    top, bottom = rng.uniform(215, 265) * h, rng.uniform(10, 50) * h
    if c.brain:
        top = c.brain_top * h
        if c.head_only:
            bottom = c.head_bottom * h
    if c.pet_ct:
        bottom = c.pet_bottom * h
    return top, bottom


def _slicing(
    spec: SeriesSpec, rng: np.random.Generator, c: SeriesConfounders, top: float, bottom: float
) -> tuple[float, float, int]:
    """Thickness, spacing and slice count."""
    chest = spec.region is Region.CHEST
    if spec.kind is SeriesKind.LOCALIZER:
        thickness = spec.thickness or 1.0
        return thickness, spec.spacing or thickness, spec.slices or 2
    thickness = spec.thickness or float(
        _choice(
            rng,
            (0.625, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0),
            [0.08, 0.2, 0.12, 0.08, 0.17, 0.1, 0.15, 0.1],
        )
        if chest
        else _choice(rng, (0.625, 1.0, 1.25, 2.0, 2.5, 3.0), [0.1, 0.25, 0.15, 0.2, 0.15, 0.15])
    )
    overlap = rng.random() < 0.2
    if c.pet_ct and spec.thickness is None:
        thickness, overlap = c.pet_thickness, False  # low-dose PET/CT: thick slices
    spacing = spec.spacing or (thickness * 0.8 if overlap and thickness >= 1.0 else thickness)
    if spec.slices is None:
        slices = int(np.clip(round((top - bottom) / spacing) + 1, 30, 600))
    else:
        slices = spec.slices
    return float(thickness), float(spacing), slices


def _field_of_view(
    spec: SeriesSpec, rng: np.random.Generator, c: SeriesConfounders, half_w: float
) -> tuple[float, int]:
    if spec.fov is not None:
        fov = float(spec.fov)
    elif spec.region is Region.CHEST:
        fov = float(np.clip(2 * half_w * rng.uniform(0.95, 1.25), 300, 500))
    else:
        fov = float(
            np.clip(rng.uniform(200, 300) if rng.random() < 0.7 else 2 * half_w * 1.05, 180, 500)
        )
    if c.pet_ct and spec.fov is None:
        fov = c.pet_fov
    matrix = spec.matrix if spec.matrix is not None else (512 if rng.random() < 0.85 else 256)
    return fov, matrix


def _reconstruction(
    spec: SeriesSpec, rng: np.random.Generator
) -> tuple[dict[str, Any], str, float, float, float | None]:
    """Scanner, kernel, noise cutoff and blur, and the drawn noise (None when given)."""
    scanner = (
        next(s for s in SCANNERS if s["manufacturer"] == spec.manufacturer)
        if spec.manufacturer
        else _choice(rng, SCANNERS, [0.35, 0.3, 0.2, 0.15])
    )
    sharp = rng.random() < 0.25
    kernel = str(_choice(rng, scanner["sharp"] if sharp else scanner["soft"]))
    if sharp:
        cutoff, blur = rng.uniform(0.55, 0.8), rng.uniform(0.1, 0.35)
    elif rng.random() < 0.3:  # iterative reconstruction: blotchy, low-frequency noise
        cutoff, blur = rng.uniform(0.18, 0.3), rng.uniform(0.5, 0.9)
    else:
        cutoff, blur = rng.uniform(0.3, 0.5), rng.uniform(0.35, 0.75)
    drawn = None if spec.noise is not None else float(np.exp(rng.uniform(np.log(5), np.log(40))))
    return scanner, kernel, float(cutoff), float(blur), drawn


def _pixel_format(
    spec: SeriesSpec, rng: np.random.Generator, scanner: dict[str, Any]
) -> tuple[bool, int, str]:
    """Signed pixels, rescale intercept and what lies outside the reconstruction circle."""
    signed = scanner["signed"] if spec.signed is None else spec.signed
    if spec.rescale_intercept is not None:
        intercept = spec.rescale_intercept
    elif not signed and rng.random() < 0.08:
        intercept = -1000
    else:
        intercept = scanner["intercept"] if (signed or scanner["intercept"] != 0) else -1024
    if not signed and intercept == 0:
        raise ValueError("rescale_intercept 0 needs signed pixels (HU below 0)")
    if scanner["padding"] and signed and intercept == -1024:
        circle = "padding"
    else:
        circle = str(_choice(rng, ("air", "none"), [0.7, 0.3]))
    return bool(signed), int(intercept), circle


def plan_series(spec: SeriesSpec) -> tuple[SeriesPlan, Anatomy]:
    """Resolve a spec: draw every unspecified value and build the patient."""
    rng = np.random.default_rng([spec.seed, 0x5E])
    anatomy_seed = spec.seed if spec.anatomy_seed is None else spec.anatomy_seed
    conf = draw_series_confounders(spec)
    chest = spec.region is Region.CHEST
    arms = spec.arms or ("down" if not chest or rng.random() < 0.15 else "up")
    arms = conf.arms or arms
    position = spec.patient_position or str(
        _choice(rng, PATIENT_POSITIONS, [0.88, 0.06, 0.04, 0.02])
    )
    extras = Extras(spec.vessel_calcium, spec.intracranial_calcium, anatomy_seed)
    anatomy = build_anatomy(
        np.random.default_rng([anatomy_seed, 0xB0]),
        arms,
        prone=position.endswith("P"),
        extras=extras,
    )
    h = anatomy.patient.height_scale

    # Coverage: the region's anatomical range, or a window of it when slices are given.
    top, bottom = _coverage(spec, rng, conf, h)
    thickness, spacing, slices = _slicing(spec, rng, conf, top, bottom)
    length = (slices - 1) * spacing
    if length <= top - bottom:
        z_top = top - rng.uniform(0, (top - bottom) - length)
    else:
        z_top = (top + bottom) / 2 + length / 2

    # Field of view: the body's width plus a margin, sometimes too small (truncation).
    ext = [anatomy.body_extent(float(z)) for z in np.linspace(z_top - length, z_top, 9)]
    fov, matrix = _field_of_view(spec, rng, conf, max(e[2] for e in ext))
    scanner, kernel, cutoff, blur, drawn_noise = _reconstruction(spec, rng)
    signed, intercept, circle = _pixel_format(spec, rng, scanner)
    tag = spec.tag or draw_tag_state(rng, spec.tag_rates)
    value = tag_value(rng, spec.phase.contrast, tag)
    ident = series_identity(spec, anatomy_seed, anatomy.patient.age, rng)
    late = _late_draws(spec, rng, scanner, ext, conf)
    modality, image_type = _kinds(spec)
    plan = SeriesPlan(
        region=spec.region.value,
        phase=spec.phase.value,
        contrast=spec.phase.contrast,
        seed=spec.seed,
        anatomy_seed=anatomy_seed,
        kind=spec.kind.value,
        sop_class=spec.sop_class.value,
        modality=spec.modality or modality,
        image_type=spec.image_type or image_type,
        matrix=matrix,
        slices=slices,
        thickness=thickness,
        spacing=spacing,
        pixel_mm=fov / matrix,
        fov_mm=fov,
        z_top=float(z_top),
        noise_cutoff=cutoff,
        blur_mm=blur,
        kernel=kernel,
        manufacturer=scanner["manufacturer"],
        fov_circle=circle,
        patient_position=position,
        tilt=conf.tilt,
        reverse=spec.reverse,
        transfer_syntax=spec.transfer_syntax,
        signed=signed,
        rescale_intercept=intercept,
        bits_stored=16 if signed else 12,
        tag_state=tag.value,
        tag_value=value,
        arms=arms,
        patient=anatomy.patient.manifest(),
        **_confounder_fields(spec, conf, anatomy, anatomy_seed, late["kvp"], drawn_noise),
        **late,
        **ident,
    )
    return plan, anatomy


def _confounder_fields(
    spec: SeriesSpec,
    conf: SeriesConfounders,
    anatomy: Anatomy,
    anatomy_seed: int,
    kvp: int,
    drawn_noise: float | None,
) -> dict[str, Any]:
    """The plan's confounder fields, and the noise at this kV (when drawn)."""
    bone_factor, _, noise_factor = kv_factors(kvp)
    if drawn_noise is None:
        noise = float(spec.noise)  # type: ignore[arg-type]
    else:
        noise = (conf.pet_noise if conf.pet_ct else drawn_noise) * noise_factor
    thyroid = spec.thyroid_hu
    if thyroid is None:
        thyroid = patient_tissues(np.random.default_rng([anatomy_seed, 0xC1]))["thyroid"]
    if spec.beam_hardening is not None:
        hardening = float(spec.beam_hardening)
    else:
        hardening = conf.beam_hardening * bone_factor  # softer beams harden more
    return dict(
        noise_sigma=float(noise),
        pet_ct=conf.pet_ct,
        brain=conf.brain,
        bolus=conf.bolus,
        beam_hardening=hardening,
        thyroid_hu=float(thyroid),
        vessel_calcium=anatomy.patient.vessel_calcium,
        intracranial_calcium=anatomy.patient.intracranial_calcium,
    )


def _kinds(spec: SeriesSpec) -> tuple[str, tuple[str, ...]]:
    """Modality and ImageType of the SOP class and kind."""
    if spec.sop_class is SopClass.SC:
        return "CT", ("DERIVED", "SECONDARY")
    if spec.sop_class is SopClass.MR:
        return "MR", ("ORIGINAL", "PRIMARY", "M", "NONE")
    axial = "LOCALIZER" if spec.kind is SeriesKind.LOCALIZER else "AXIAL"
    return "CT", ("ORIGINAL", "PRIMARY", axial)


def _late_draws(
    spec: SeriesSpec,
    rng: np.random.Generator,
    scanner: dict[str, Any],
    ext: list[tuple[float, float, float, float]],
    conf: SeriesConfounders,
) -> dict[str, Any]:
    """The main generator's last draws, in their order: centring, scanner settings,
    calibration, table, oral contrast, bolus and display window."""
    cx = float(np.mean([e[0] for e in ext]))
    cy = float(np.mean([e[1] for e in ext]))
    out: dict[str, Any] = dict(
        centre_x=round(cx + rng.normal(0, 8), 1),
        centre_y=round(cy + rng.normal(0, 12), 1),
        z_offset=float(np.round(rng.uniform(-900, 150) * 2) / 2),
        model=str(_choice(rng, scanner["models"])),
        kvp=int(_choice(rng, KVP_CHOICES, KVP_RATES)),
        mas=int(rng.integers(60, 350)),
        hu_offset=float(rng.uniform(-10, 10)),
        cupping=float(rng.uniform(0, 15)),
        table=str(_choice(rng, ("curved", "flat", "none"), [0.7, 0.2, 0.1])),
        table_gap=float(rng.uniform(0, 60) if rng.random() < 0.5 else rng.uniform(0, 6)),
        table_shell=float(rng.uniform(0.8, 3.0)),
        oral_contrast=bool(rng.random() < 0.08),
        injected_dense=bool(spec.phase is Phase.ARTERIAL and rng.random() < 0.7),
        window=(40.0, 400.0) if rng.random() < 0.8 else (50.0, 350.0),
    )
    if conf.pet_ct:  # low-dose attenuation CT on a PET/CT scanner
        out["model"] = PET_MODELS[scanner["manufacturer"]]
        out["kvp"] = out["kvp"] if out["kvp"] in (100, 120) else 120
        out["mas"] = conf.pet_mas
    if spec.kvp is not None:
        out["kvp"] = int(spec.kvp)
    return out


def draw_tag_state(rng: np.random.Generator, rates: tuple[float, float, float]) -> TagState:
    """Correct, missing or wrong with the given rates."""
    return TagState(_choice(rng, tuple(TagState), list(rates)))


def tag_value(rng: np.random.Generator, contrast: bool, tag: TagState) -> str | None:
    """ContrastBolusAgent's value; None = absent, '' = present but empty.

    Correct and wrong follow the study's reading: 'N', 'n' and 'NO' mean no contrast,
    any other value means contrast.
    """
    if tag is TagState.MISSING:
        return None if rng.random() < 0.8 else ""
    says_contrast = contrast == (tag is TagState.CORRECT)
    return str(_choice(rng, AGENTS)) if says_contrast else str(_choice(rng, NO_AGENT))
