"""The 15 Robust-Seg degradations as batched torch/kornia operations, severity levels 1..5 and a
LQSeg-style mixed chain. See `registry` for the per-sample reproducibility contract.

    from . import DEGRADATIONS, degrade
    degraded = degrade(images, "fog", level=3, generator=torch.Generator().manual_seed(0))
"""

from . import blur, codec, geometric, photometric, weather  # noqa: F401  (register the types)
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
    "PUBLISHED",
    "Degradation",
    "degrade",
    "generator_from_seed",
    "mixed_degrade",
    "register",
    "sample_generators",
]
