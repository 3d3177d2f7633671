"""A randomised adult body from the skull base to the upper abdomen, as analytic shapes.

Coordinates are patient millimetres, LPS: x to the patient's left, y to the back, z to
the head, with z = 0 at the carina. Everything that is not the physiology of contrast is
drawn from the patient's random generator: body build, fat, organ sizes and positions,
vessel calibres and courses, lung vessel trees, spine, ribs, calcium, teeth and metal.
The shapes are listed in painting order; each slice paints the ones its plane crosses.

One module per region (``torso``, ``chest``, ``mediastinum``, ``abdomen``, ``spine``,
``neck``, ``head``, ``calcium``), each a mixin of :class:`~.builder.Builder` over the
shared :class:`~.base.BuilderBase`; ``extras`` adds the confounders a patient carries
(calcified vessel walls and brain, the brain's ventricles, raised-arm streaks) from
their own generators.
"""

from ivcontrast.synth.anatomy.base import VERTEBRAE, Anatomy, Metal, Patient
from ivcontrast.synth.anatomy.builder import Builder, build_anatomy
from ivcontrast.synth.anatomy.extras import Extras

__all__ = ["VERTEBRAE", "Anatomy", "Builder", "Extras", "Metal", "Patient", "build_anatomy"]
