"""Mask Average Pooling: the vectorised label-map implementation against a per-segment loop.

Run: python3 benchmarks/map_pool.py  (prints a table; ratio = loop time / vectorised time)
"""

from __future__ import annotations

import time

import torch

from priors.map_pool import mask_average_pool


def per_segment_loop(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The direct reading of the definition: one masked mean per image and segment."""
    out = torch.empty_like(features)
    for b in range(features.shape[0]):
        for value in labels[b].unique():
            where = labels[b] == value
            out[b][:, where] = features[b][:, where].mean(dim=1, keepdim=True)
    return out


def _time(fn, *args, repeat: int = 5) -> float:
    fn(*args)
    start = time.perf_counter()
    for _ in range(repeat):
        fn(*args)
    return (time.perf_counter() - start) / repeat


def main() -> None:
    torch.manual_seed(0)
    print(f"{'batch':>5} {'segments':>8} {'size':>5} {'loop ms':>9} {'vectorised ms':>13} {'ratio':>6}")
    for batch, segments, size in [(1, 20, 256), (8, 60, 256), (32, 100, 256)]:
        features = torch.randn(batch, 2, size, size)
        labels = torch.randint(0, segments, (batch, size, size))
        torch.testing.assert_close(mask_average_pool(features, labels), per_segment_loop(features, labels))
        loop, vectorised = _time(per_segment_loop, features, labels), _time(mask_average_pool, features, labels)
        print(f"{batch:>5} {segments:>8} {size:>5} {loop * 1e3:>9.1f} {vectorised * 1e3:>13.1f} {loop / vectorised:>6.1f}")


if __name__ == "__main__":
    main()
