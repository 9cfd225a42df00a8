"""Per-sample random draws on the CPU, shared by the degradations."""

from __future__ import annotations

import math
from typing import Callable, List, Optional, Sequence, Tuple

import torch

Range = Tuple[float, float]


def at_level(table: Sequence, level: int):
    """The entry of a five-entry table for severity `level` (1..5)."""
    return table[level - 1]


def unit(generator: torch.Generator) -> float:
    """One draw from U[0, 1)."""
    return float(torch.rand((), generator=generator))


def lerp(bounds: Range, u: float) -> float:
    """bounds[0] + u * (bounds[1] - bounds[0]): parameters are drawn as a unit variate mapped into a
    level's range, so the same seed gives a parameter that grows monotonically with the level."""
    return bounds[0] + u * (bounds[1] - bounds[0])


def per_sample(generators: Sequence[torch.Generator], draw: Callable[[torch.Generator], float]) -> torch.Tensor:
    """(B,) float64 CPU tensor of one scalar drawn per sample."""
    return torch.tensor([draw(g) for g in generators], dtype=torch.float64)


def fields(
    generators: Sequence[torch.Generator],
    shape: Sequence[int],
    fill: Callable[[torch.Tensor, torch.Generator], object],
    like: torch.Tensor,
    dtype: torch.dtype = torch.float32,
    out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """(B, *shape) random fields: `fill(slice, generator)` fills each sample's slice in place on the
    CPU, then the whole buffer moves to `like`'s device (and dtype, for floating buffers).

    `out` (optional): the tensor to return them in; filled directly when it is a contiguous CPU
    tensor of `dtype` (the draws are the same either way).
    """
    direct = out is not None and out.device.type == "cpu" and out.dtype == dtype and out.is_contiguous()
    buffer = out if direct else torch.empty(len(generators), *shape, dtype=dtype)
    for sample, generator in zip(buffer, generators):
        fill(sample, generator)
    if direct:
        return buffer
    if out is not None:
        return out.copy_(buffer)  # to out's device and dtype in one step
    target = like.dtype if dtype.is_floating_point else dtype
    return buffer.to(device=like.device, dtype=target)


def odd_sizes(generators: Sequence[torch.Generator], low: int, high: int) -> List[int]:
    """One odd integer in [low, high] per sample (low, high odd)."""
    count = (high - low) // 2 + 1
    return [low + 2 * min(int(unit(g) * count), count - 1) for g in generators]


POISSON_LEVELS = 2**16


def poisson(generator: torch.Generator, rate: float, shape: Sequence[int]) -> torch.Tensor:
    """Poisson counts of one `rate` by inverting the CDF at uniform draws on a grid of
    POISSON_LEVELS levels: each count's probability is exact to 1 / POISSON_LEVELS. When all pixels
    share a rate, a lookup in the 65536-entry table is 3x faster than a binary search per pixel
    (benchmarks/bench_choices.py), itself several times faster than `torch.poisson`."""
    levels = torch.randint(0, POISSON_LEVELS, tuple(shape), generator=generator)
    if rate <= 0:
        return torch.zeros(*shape)
    counts = torch.arange(int(rate + 12 * math.sqrt(rate) + 12) + 1, dtype=torch.float64)
    cdf = torch.cumsum(torch.exp(counts * math.log(rate) - rate - torch.lgamma(counts + 1)), 0)
    midpoints = (torch.arange(POISSON_LEVELS, dtype=torch.float64) + 0.5) / POISSON_LEVELS
    table = torch.searchsorted(cdf, midpoints).clamp_(max=len(counts) - 1).float()
    return table.take(levels)
