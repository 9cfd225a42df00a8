"""Deterministic synthetic weights keyed by name, for checkpoint-compatibility tests and demos.

Same definition as `shared/parity/synthetic_weights.py`: every tensor is a pure function of its
key and shape, so any implementation with the released key names gets identical weights.
"""

from __future__ import annotations

import math
import zlib
from collections import OrderedDict
from typing import Mapping, Sequence

import torch

_SMALL_INIT = ("rel_pos_h", "rel_pos_w", "pos_embed")
_EMBEDDING_SUFFIXES = ("token.weight", "tokens.weight", "embed.weight")
_EMBEDDING_PARTS = (".point_embeddings.", "not_a_point_embed", "no_mask_embed")


def _is_embedding(key: str, leaf: str) -> bool:
    return (leaf == "weight" and key.endswith(_EMBEDDING_SUFFIXES)) or any(part in key for part in _EMBEDDING_PARTS)


def synthetic_tensor(key: str, shape: Sequence[int]) -> torch.Tensor:
    """The float32 tensor (int64 for batch counters) stored under `key` in a synthetic checkpoint."""
    shape = tuple(int(s) for s in shape)
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return torch.tensor(0, dtype=torch.int64)
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    noise = torch.randn(shape, generator=generator, dtype=torch.float64)
    if leaf == "running_var":
        tensor = 1.0 + 0.2 * noise.abs()
    elif leaf == "running_mean":
        tensor = 0.1 * noise
    elif len(shape) == 1:
        tensor = 1.0 + 0.1 * noise if leaf == "weight" else 0.02 * noise
    elif leaf == "positional_encoding_gaussian_matrix":
        tensor = noise
    elif leaf in _SMALL_INIT:
        tensor = 0.02 * noise
    elif _is_embedding(key, leaf):
        tensor = noise
    else:
        fan_in = math.prod(shape[1:])
        tensor = noise / math.sqrt(max(fan_in, 1))
    return tensor.to(torch.float32)


def synthetic_state_dict(manifest: Mapping[str, Sequence[int]]) -> "OrderedDict[str, torch.Tensor]":
    """A full state dict for a {key: shape} manifest, in manifest order."""
    return OrderedDict((key, synthetic_tensor(key, shape)) for key, shape in manifest.items())
