"""Deterministic, work-balanced splits of a job list into N shards (`--shard K/N`, torchrun ranks)."""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass
from typing import Optional, Sequence, TypeVar

from ..errors import InputError

Item = TypeVar("Item")


@dataclass(frozen=True)
class Shard:
    """Shard `index` (0-based) of `count`."""

    index: int = 0
    count: int = 1

    @property
    def name(self) -> str:
        return f"{self.index}-of-{self.count}"


def parse_shard(text: str) -> Shard:
    """'K/N' -> Shard(K, N); InputError unless 0 <= K < N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"--shard {text}: expected K/N, such as 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise InputError(f"--shard {text}: K must be in 0..N-1")
    return Shard(index, count)


def shard_from_env() -> Optional[Shard]:
    """The Shard of this torchrun worker (RANK of WORLD_SIZE), or None outside torchrun."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    return Shard(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]))


def assign_shards(weights: Sequence[float], count: int) -> list[int]:
    """The shard of each item: heaviest first to the least-loaded shard (ties: lowest index).

    Depends only on `weights`, so every process computes the same split without talking.
    """
    order = sorted(range(len(weights)), key=lambda item: (-weights[item], item))
    loads = [(0.0, shard) for shard in range(count)]
    owner = [0] * len(weights)
    for item in order:
        load, shard = heapq.heappop(loads)
        owner[item] = shard
        heapq.heappush(loads, (load + weights[item], shard))
    return owner


def shard_items(items: Sequence[Item], weights: Sequence[float], shard: Optional[Shard]) -> list[Item]:
    """The items, in order, that `shard` does by `assign_shards(weights)`; all of them for None."""
    if shard is None:
        return list(items)
    owners = assign_shards(weights, shard.count)
    return [item for item, owner in zip(items, owners) if owner == shard.index]
