"""The 15 Robust-Seg degradations as batched torch/kornia operations, severity levels 1..5, a
LQSeg-style mixed chain, and GleSAM's LQSeg chain itself (levels LQ-1..LQ-3, `lqseg`). See `registry`
for the per-sample reproducibility contract.

    from . import DEGRADATIONS, degrade
    degraded = degrade(images, "fog", level=3, generator=torch.Generator().manual_seed(0))
"""

from . import blur, codec, geometric, photometric, weather  # noqa: F401  (register the types)
from .lqseg import LQSEG_TYPES, lqseg, lqseg_training
from .mixed import mixed_degrade
from .registry import (
    DEFAULT_LEVEL,
    DEGRADATIONS,
    LEVELS,
    PUBLISHED,
    Degradation,
    degrade,
    generator_from_seed,
    register,
    sample_generators,
)


@register("identity")
def identity(images, generators, level):
    """The clear image (training draws it alongside the 15 types)."""
    return images.clone()


# Modules register in import order; list the published types in the published order.
for _name in PUBLISHED + ("identity",):
    DEGRADATIONS[_name] = DEGRADATIONS.pop(_name)


__all__ = [
    "DEFAULT_LEVEL",
    "DEGRADATIONS",
    "LEVELS",
    "LQSEG_TYPES",
    "PUBLISHED",
    "Degradation",
    "degrade",
    "generator_from_seed",
    "lqseg",
    "lqseg_training",
    "mixed_degrade",
    "register",
    "sample_generators",
]
