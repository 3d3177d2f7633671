"""The final call: the network's label, or ``review`` where a person should look.

Two things send a series to review:

- the scan probability lies within the review band around the threshold (the network is
  unsure), or
- the physics opinion (``classifier.physics``) found the blood pool and reads it clearly on
  the other side of its HU threshold: at least ``physics_margin_hu`` away from it. A blood
  pool near the threshold (weak enhancement, dense unenhanced blood) overrules nothing, and
  a low reading overrules a contrast call only where it comes from a trunk vessel (aorta,
  heart): small neck vessels and sinuses are missed too easily to rule contrast out.

A pure function of numbers, so every rule is unit-tested without a model.
"""

from __future__ import annotations

from dataclasses import dataclass

from ivcontrast.classifier.physics import BloodPool
from ivcontrast.vocabulary import Label


@dataclass(frozen=True)
class ReviewPolicy:
    band: float = 0.0  # probabilities within this of the threshold go to review
    physics_margin_hu: float = 25.0


@dataclass(frozen=True)
class Decision:
    label: Label  # contrast, no_contrast or review
    network_label: Label  # what the network alone says
    reasons: tuple[str, ...]  # why review; empty for a confident call


def physics_says(pool: BloodPool | None, margin_hu: float) -> bool | None:
    """The physics opinion where it is clear: True/False, or None (not found, too close to
    its threshold, or a low reading from a structure too small to rule contrast out)."""
    if pool is None or not pool.found or pool.hu is None:
        return None
    if abs(pool.hu - pool.threshold_hu) < margin_hu:
        return None
    enhanced = pool.hu >= pool.threshold_hu
    if not enhanced and not pool.rules_out:
        return None
    return enhanced


def decide(
    probability: float, threshold: float, pool: BloodPool | None, policy: ReviewPolicy
) -> Decision:
    network = Label.of(probability >= threshold)
    reasons: list[str] = []
    if abs(probability - threshold) < policy.band:
        reasons.append(
            f"probability {probability:.3f} is within {policy.band:g} of the threshold "
            f"{threshold:.3f}"
        )
    physics = physics_says(pool, policy.physics_margin_hu)
    if pool is not None and physics is not None and physics != (network is Label.CONTRAST):
        reasons.append(
            f"the network says {network}, but the blood pool ({pool.structure}) reads "
            f"{pool.hu:.0f} HU, {'above' if physics else 'below'} {pool.threshold_hu:g} HU"
        )
    return Decision(Label.REVIEW if reasons else network, network, tuple(reasons))
