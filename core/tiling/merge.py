"""Segment-everything across tile seams: masks of neighbouring tiles that agree where the tiles
overlap are one object, joined into one mask.

The rule follows micro-sam's tiled stitching and samgeo's mosaics: two masks from overlapping
tiles are the same object when their IoU *within the shared window* reaches a threshold. That one
test removes duplicates (an object inside the overlap, seen whole by both tiles) and joins objects
that continue over a seam (each tile sees the same part inside the overlap). Matches are joined
transitively, so an object over many tiles becomes one mask.
"""

from __future__ import annotations

from typing import Sequence

from .grid import TileGrid, Window
from .placed import PlacedMask, join


def iou_within(a: PlacedMask, b: PlacedMask, window: Window) -> float:
    """IoU of two masks counting only the pixels inside `window`; 0 when neither has any there."""
    part_a, part_b = a.window.intersection(window), b.window.intersection(window)
    if part_a is None or part_b is None:
        return 0.0
    area_a, area_b = int(a.within(part_a).sum()), int(b.within(part_b).sum())
    both = part_a.intersection(part_b)
    inter = int((a.within(both) & b.within(both)).sum()) if both is not None else 0
    union = area_a + area_b - inter
    return inter / union if union else 0.0


def merge_seams(per_tile: Sequence[Sequence[PlacedMask]], grid: TileGrid, iou_threshold: float = 0.5) -> list[PlacedMask]:
    """Masks of every tile of `grid` (`per_tile[i]` from tile i) with the same objects joined;
    the result keeps the order of each object's first mask."""
    masks = [mask for tile in per_tile for mask in tile]
    first = [0]
    for tile in per_tile:
        first.append(first[-1] + len(tile))
    parent = list(range(len(masks)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    for tile_a, tile_b, shared in grid.neighbours():
        near_a = [i for i in range(first[tile_a], first[tile_a + 1]) if masks[i].window.intersection(shared) is not None]
        near_b = [j for j in range(first[tile_b], first[tile_b + 1]) if masks[j].window.intersection(shared) is not None]
        for i in near_a:
            for j in near_b:
                if root(i) != root(j) and iou_within(masks[i], masks[j], shared) >= iou_threshold:
                    parent[max(root(i), root(j))] = min(root(i), root(j))
    groups: dict[int, list[PlacedMask]] = {}
    for index, mask in enumerate(masks):
        groups.setdefault(root(index), []).append(mask)
    return [members[0] if len(members) == 1 else join(members) for members in groups.values()]
