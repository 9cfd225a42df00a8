"""The degradation registry, per-sample generators and `degrade`, the batched entry point.

Reproducibility contract. Every sample is degraded with its own CPU `torch.Generator`; all of a
sample's random parameters and noise fields are drawn from it on the CPU, in an order that does
not depend on the batch, then moved to the images' device. `degrade(x, k, generator=g)` first
draws one seed per sample from `g` (`sample_generators(g, B)`), so

    degrade(x, k, generator=torch.Generator().manual_seed(s))
    == degrade(x, k, generator=sample_generators(torch.Generator().manual_seed(s), len(x)))
    == torch.cat([degrade(x[i:i+1], k, generator=[gens[i]]) for i in range(len(x))])

where `gens` are those same per-sample generators (up to floating-point summation order), on CPU
and on GPU alike: the code path is the same and only the arithmetic runs on the device.
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch

# A degradation takes images (B, 3, H, W) float in [0, 1], one CPU generator per sample and a
# severity level 1..5, and returns a new tensor of the same shape; `degrade` clamps it. One that
# also takes a keyword `out` may build its result in that tensor (same shape and dtype, never
# overlapping the images) and return it, which spares an allocation per batch.
Degradation = Callable[..., torch.Tensor]
GeneratorArg = Union[torch.Generator, Sequence[torch.Generator], None]

DEGRADATIONS: Dict[str, Degradation] = {}

# The 15 types of the Robust-Seg data set, in the published order.
PUBLISHED = (
    "snow",
    "fog",
    "rain",
    "gauss_noise",
    "ISO_noise",
    "impulse_noise",
    "resampling_blur",
    "motion_blur",
    "zoom_blur",
    "color_jitter",
    "compression",
    "elastic_transform",
    "frosted_glass_blur",
    "brightness",
    "contrast",
)

LEVELS = range(1, 6)
DEFAULT_LEVEL = 3  # the published parameters

_SEED_BOUND = 2**62
# Pixels per step on the CPU (see `degrade`): two 512x512 images, one 1024x1024. At 1024x1024 one
# image per step ran zoom_blur 1.1-1.45x faster than two (benchmarks/bench_choices.py).
CPU_CHUNK_PIXELS = 2 * 512 * 512


def register(name: str, fn: Optional[Degradation] = None):
    """Adds `fn(images, generators, level) -> images` to DEGRADATIONS under `name`.

    Usable as `register("name", fn)` or as the decorator `@register("name")`.
    """

    def add(fn: Degradation) -> Degradation:
        if name in DEGRADATIONS and DEGRADATIONS[name] is not fn:
            raise ValueError(f"degradation {name!r} is already registered")
        DEGRADATIONS[name] = fn
        return fn

    return add if fn is None else add(fn)


@functools.lru_cache(maxsize=None)
def _takes_out(fn: Degradation) -> bool:
    """Whether a degradation accepts the keyword `out` (see `Degradation`)."""
    return "out" in inspect.signature(fn).parameters


def _same_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def sample_generators(generator: Optional[torch.Generator], n: int) -> List[torch.Generator]:
    """n fresh CPU generators seeded with n seeds drawn, in order, from `generator`
    (from torch's default CPU generator when None, so `torch.manual_seed` makes runs repeatable)."""
    seeds = torch.randint(0, _SEED_BOUND, (n,), generator=generator)
    return [generator_from_seed(int(seed)) for seed in seeds]


def generator_from_seed(seed: int) -> torch.Generator:
    """A CPU generator in the state given by `seed`."""
    return torch.Generator(device="cpu").manual_seed(seed)


def resolve_generators(generator: GeneratorArg, n: int) -> List[torch.Generator]:
    """Per-sample generators from a single generator (seeds drawn from it), a sequence of n, or None."""
    if generator is None or isinstance(generator, torch.Generator):
        return sample_generators(generator, n)
    generators = list(generator)
    if len(generators) != n:
        raise ValueError(f"got {len(generators)} generators for {n} images")
    if any(g.device.type != "cpu" for g in generators):
        raise ValueError("generators must be CPU generators")
    return generators


def check_images(images: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be a floating tensor in [0, 1], got {images.dtype}")


def check_level(level: int) -> None:
    if level not in LEVELS:
        raise ValueError(f"level must be 1..5, got {level}")


def working_copy(images: torch.Tensor) -> torch.Tensor:
    """float32 or float64 view of the images: half precision is too coarse for noise and FFTs."""
    return images if images.dtype in (torch.float32, torch.float64) else images.float()


def degrade(
    images: torch.Tensor,
    kinds: Union[str, Sequence[str]],
    *,
    level: int = DEFAULT_LEVEL,
    generator: GeneratorArg = None,
    out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Degrades a batch; each sample draws its own parameters.

    Arguments:
      images: (B, 3, H, W) float in [0, 1] on any device.
      kinds: one registered name for the whole batch, or B names, one per sample.
      level: severity 1..5; 3 is the published parameters.
      generator: a CPU generator (one seed per sample is drawn from it), B CPU generators (one per
        sample, used as they are), or None (seeds from torch's default generator).
      out: where to write the result, shaped, typed and placed like `images`; may be `images` itself.
        A batch loop that reuses one buffer spares the allocation, whose page faults on the CPU cost
        more than the cheapest degradations (brightness 2.4x faster, benchmarks/bench_choices.py).

    Returns:
      (B, 3, H, W) in [0, 1], same device and dtype as `images` (`out` when given).
    """
    check_images(images)
    check_level(level)
    batch = images.shape[0]
    names = [kinds] * batch if isinstance(kinds, str) else list(kinds)
    if len(names) != batch:
        raise ValueError(f"got {len(names)} degradation names for {batch} images")
    unknown = sorted(set(names) - DEGRADATIONS.keys())
    if unknown:
        raise ValueError(f"unknown degradation {unknown[0]!r}; known: {', '.join(DEGRADATIONS)}")
    generators = resolve_generators(generator, batch)
    if out is None:
        out = torch.empty_like(images, memory_format=torch.contiguous_format)
    elif out.shape != images.shape or out.dtype != images.dtype or out.device != images.device:
        raise ValueError(
            f"out must match the images' shape, dtype and device: {tuple(out.shape)} {out.dtype} {out.device}"
            f" vs {tuple(images.shape)} {images.dtype} {images.device}"
        )
    work = working_copy(images)
    # On the CPU a whole batch of large images falls out of cache and runs slower per image than a
    # few at a time; per-sample generators make the chunking invisible in the result.
    height, width = images.shape[-2:]
    step = max(1, CPU_CHUNK_PIXELS // (height * width)) if work.device.type == "cpu" else batch
    for start in range(0, batch, step):
        end = start + step
        # Channels-last input (an (H, W, 3) array permuted) made gauss_noise 1.5x slower
        # (benchmarks/bench_choices.py); a chunk is small enough to reorder in cache.
        chunk = work[start:end].contiguous()
        _run(chunk, names[start:end], generators[start:end], level, out[start:end])
    return out


def _run(work: torch.Tensor, names: List[str], generators: List[torch.Generator], level: int, out: torch.Tensor) -> None:
    """Writes each sample's degradation, clamped to [0, 1], into out; each type runs once on all of
    its samples."""
    kinds_in_order = list(dict.fromkeys(names))
    if len(kinds_in_order) == 1:
        fn = DEGRADATIONS[kinds_in_order[0]]
        if _takes_out(fn) and out.dtype == work.dtype and not _same_storage(out, work):
            result = fn(work, generators, level, out=out)
        else:
            result = fn(work, generators, level)
        if result is out:
            out.clamp_(0.0, 1.0)
        elif result.dtype == out.dtype:
            torch.clamp(result, 0.0, 1.0, out=out)  # the clamp is the copy: one pass instead of two
        else:
            out.copy_(result.clamp(0.0, 1.0))
        return
    for name in kinds_in_order:
        index = [i for i, n in enumerate(names) if n == name]
        out[index] = DEGRADATIONS[name](work[index], [generators[i] for i in index], level).to(out.dtype)
    out.clamp_(0.0, 1.0)
