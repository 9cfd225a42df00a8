"""What every split command shares: its state folder with one done marker per shard, the weight of
an image, the device of a torchrun worker, and progress counting."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import InputError
from ..io import atomic_path, read_image_size
from .payload import to_json
from .shard import Shard

STATE_DIR = ".parallel"


def mark_done(output_dir: str | os.PathLike, shard: Shard, summary: Any) -> bool:
    """Records that `shard` finished its part (its summary, a dataclass, in OUTPUT/.parallel/done-K-of-N.json).

    Returns True when every shard of its count has: the caller then merges the parts (shards that
    finish together may both merge; merges write the same files atomically).
    """
    state = Path(output_dir) / STATE_DIR
    with atomic_path(state / f"done-{shard.name}.json") as tmp:
        tmp.write_text(json.dumps(to_json(summary)), encoding="utf-8")
    return all((state / f"done-{index}-of-{shard.count}.json").is_file() for index in range(shard.count))


def image_area(path: str | os.PathLike) -> float:
    """An image's pixels from its header, for weighing work; 1 when unreadable (the run reports it)."""
    try:
        height, width = read_image_size(path)
    except InputError:
        return 1.0
    return float(height * width)


def worker_device(cuda: bool) -> torch.device:
    """This torchrun worker's device: its local rank's GPU when `cuda`, else the CPU."""
    return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}") if cuda else torch.device("cpu")


def counter(progress: Callable[[int, int], None], total: int) -> Callable[[int], None]:
    """Reports (0, total) now; the returned `advance(n)` reports n more items done."""
    done = 0
    progress(done, total)

    def advance(count: int = 1) -> None:
        nonlocal done
        done += count
        progress(done, total)

    return advance
