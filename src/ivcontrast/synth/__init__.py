"""Synthetic CT: phantom series with and without IV contrast, and a parallel sender.

The physics of contrast is the only thing that separates the classes; everything else
(body, organs, noise, kernel, scanner, tags) is randomised from the seed::

    from ivcontrast.synth import SeriesSpec, write_series, SyntheticSeries
    spec = SeriesSpec(region="chest", phase="arterial", matrix=128, slices=24, seed=7)
    paths = write_series(spec, tmp_path / "s1")
    truth = SyntheticSeries(spec).truth(10)
    aorta_hu = truth.hu[truth.mask("aorta")].mean()

Non-contrast phantoms also carry what makes real unenhanced scans look enhanced
(``synth.confounders``: calcified vessel walls and brain, a dense thyroid, low kV,
PET/CT, gantry tilt, beam hardening; a weak bolus in contrast series), each a spec field
that is drawn when ``None``: ``SeriesSpec(vessel_calcium="heavy", kvp=80)``.
"""

from ivcontrast.synth.physiology import (
    ARTERIAL_LABELS,
    BLOOD_LABELS,
    BLOOD_RANGES,
    LABEL,
    LABELS,
    VENOUS_LABELS,
    Phase,
)
from ivcontrast.synth.series import (
    SliceTruth,
    SyntheticSeries,
    generate_series,
    series_plan,
    slice_truth,
    write_series,
)
from ivcontrast.synth.spec import (
    DEFAULT_TAG_RATES,
    TRANSFER_SYNTAXES,
    Region,
    SeriesKind,
    SeriesPlan,
    SeriesSpec,
    SopClass,
    TagState,
)

__all__ = [
    "ARTERIAL_LABELS",
    "BLOOD_LABELS",
    "BLOOD_RANGES",
    "DEFAULT_TAG_RATES",
    "LABEL",
    "LABELS",
    "TRANSFER_SYNTAXES",
    "VENOUS_LABELS",
    "Phase",
    "Region",
    "SeriesKind",
    "SeriesPlan",
    "SeriesSpec",
    "SliceTruth",
    "SopClass",
    "SyntheticSeries",
    "TagState",
    "generate_series",
    "series_plan",
    "slice_truth",
    "write_series",
]
