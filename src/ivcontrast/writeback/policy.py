"""Which results are written back, and what the corrected tags say: pure functions."""

from __future__ import annotations

from dataclasses import dataclass

from ivcontrast.config import WritebackSettings
from ivcontrast.vocabulary import Label

CONTRAST = Label.CONTRAST
NO_CONTRAST = Label.NO_CONTRAST


def confidence(label: str, probability: float) -> float:
    """The model's confidence in its own label: the probability of the label it gave."""
    return probability if label == CONTRAST else 1.0 - probability


def selected(settings: WritebackSettings, label: str, probability: float, tag_status: str) -> bool:
    """True when the trigger policy selects this result for write-back."""
    disagreement = tag_status in ("missing", "disagrees")
    confident = confidence(label, probability) >= settings.min_confidence
    match settings.trigger:
        case "all":
            return True
        case "disagreements":
            return disagreement
        case "confident":
            return confident
        case "confident_disagreements":
            return disagreement and confident
    raise ValueError(f"unknown write-back trigger {settings.trigger!r}")


@dataclass(frozen=True)
class ContrastTags:
    """Contrast/Bolus attributes to set (keyword -> value) and to remove, for one label."""

    contrast: bool  # the label: IV contrast or not
    values: dict[str, str]
    remove: tuple[str, ...]


# The Contrast/Bolus Module (PS3.3 C.7.6.4) besides the agent: a "no contrast" copy drops
# them, so that no attribute is left saying how a contrast that was not given was given.
CONTRAST_BOLUS_DETAILS = (
    "ContrastBolusAgentSequence",
    "ContrastBolusRoute",
    "ContrastBolusAdministrationRouteSequence",
    "ContrastBolusVolume",
    "ContrastBolusStartTime",
    "ContrastBolusStopTime",
    "ContrastBolusTotalDose",
    "ContrastFlowRate",
    "ContrastFlowDuration",
    "ContrastBolusIngredient",
    "ContrastBolusIngredientConcentration",
)


def contrast_tags(settings: WritebackSettings, label: str) -> ContrastTags:
    """What a corrected copy of a series with ``label`` says about contrast."""
    if label == CONTRAST:
        values = {"ContrastBolusAgent": settings.contrast_agent}
        if settings.contrast_route:
            values["ContrastBolusRoute"] = settings.contrast_route
        if settings.contrast_ingredient:
            values["ContrastBolusIngredient"] = settings.contrast_ingredient
        return ContrastTags(True, values, ())
    if label == NO_CONTRAST:
        if settings.no_contrast_agent:
            return ContrastTags(
                False, {"ContrastBolusAgent": settings.no_contrast_agent}, CONTRAST_BOLUS_DETAILS
            )
        return ContrastTags(False, {}, ("ContrastBolusAgent", *CONTRAST_BOLUS_DETAILS))
    raise ValueError(f"unknown label {label!r}")
