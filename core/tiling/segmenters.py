"""Segmenting a large image tile by tile: prompts routed to the tiles that hold them and stitched,
segment-everything per tile with masks merged over the seams."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Optional, Sequence

from ..data.prompt_files import Prompt
from ..inference.segment import AutomaticSegmenter, PromptSegmenter, input_point
from .grid import TileGrid, Window, check_tiling
from .merge import merge_seams
from .placed import PlacedMask, join
from .sources import ImageSource

# IoU inside the shared window at which masks of neighbouring tiles are one object.
SEAM_IOU = 0.5


def prompt_extent(prompt: Prompt) -> tuple[float, float, float, float]:
    """The box (x0, y0, x1, y1) holding the prompt's box and points."""
    xs = [x for x, _ in prompt.points] + ([prompt.box[0], prompt.box[2]] if prompt.box is not None else [])
    ys = [y for _, y in prompt.points] + ([prompt.box[1], prompt.box[3]] if prompt.box is not None else [])
    return min(xs), min(ys), max(xs), max(ys)


def translate(prompt: Prompt, dx: float, dy: float) -> Prompt:
    """`prompt` moved by (-dx, -dy): in the coordinates of a window whose corner is (dx, dy)."""
    box = None if prompt.box is None else (prompt.box[0] - dx, prompt.box[1] - dy, prompt.box[2] - dx, prompt.box[3] - dy)
    return replace(prompt, box=box, points=tuple((x - dx, y - dy) for x, y in prompt.points))


def in_tile(prompt: Prompt, tile: Window) -> Optional[Prompt]:
    """The part of a prompt larger than a tile that falls in `tile`, in the tile's coordinates: its
    box clipped to the tile and the points inside it. None when that part asks for no foreground
    (the box misses the tile, or there is no box and no foreground point in it)."""
    box = prompt.box
    if box is not None:
        box = (max(box[0], tile.x0), max(box[1], tile.y0), min(box[2], tile.x1), min(box[3], tile.y1))
        if box[0] >= box[2] or box[1] >= box[3]:
            return None
    kept = [(point, label) for point, label in zip(prompt.points, prompt.labels)
            if tile.x0 <= point[0] <= tile.x1 and tile.y0 <= point[1] <= tile.y1]
    if box is None and 1 not in (label for _, label in kept):
        return None
    clipped = replace(prompt, box=box, points=tuple(point for point, _ in kept), labels=tuple(label for _, label in kept))
    return translate(clipped, tile.x0, tile.y0)


class TiledPromptSegmenter:
    """Masks for prompts on a large image read tile by tile.

    A prompt that fits in a tile runs on the tile holding it with the most margin, so its mask is
    exactly that of the tile segmented alone. A larger prompt runs, clipped, on every tile it meets;
    each tile gives the pixels it owns (`TileGrid.core`) and the pieces are stitched.
    """

    def __init__(self, segmenter: PromptSegmenter, tile: int, overlap: int) -> None:
        check_tiling(tile, overlap)
        self.segmenter, self.tile, self.overlap = segmenter, tile, overlap

    def __call__(self, source: ImageSource, prompts: Sequence[Prompt]) -> list[PlacedMask]:
        """Placed masks in prompt order (three per prompt with all_masks)."""
        size = (source.height, source.width)
        for prompt in prompts:
            prompt.check_inside(source.width, source.height)
        grid = TileGrid(source.height, source.width, self.tile, self.overlap)
        routed: dict[int, list[tuple[int, Prompt]]] = defaultdict(list)
        whole: set[int] = set()
        for index, prompt in enumerate(prompts):
            holder = grid.best_containing(*prompt_extent(prompt))
            if holder is not None:
                whole.add(index)
                window = grid.window(holder)
                routed[holder].append((index, translate(prompt, window.x0, window.y0)))
                continue
            for tile in grid.covering(*prompt_extent(prompt)):
                piece = in_tile(prompt, grid.window(tile))
                if piece is not None:
                    routed[tile].append((index, piece))
        pieces: dict[int, list[tuple[int, PlacedMask]]] = defaultdict(list)
        for tile in sorted(routed):
            window = grid.window(tile)
            tile_prompts = [prompt for _, prompt in routed[tile]]
            records = self.segmenter(source.read(window), tile_prompts)
            per_prompt = len(records) // len(tile_prompts)
            for n, (index, _) in enumerate(routed[tile]):
                for candidate, record in enumerate(records[n * per_prompt : (n + 1) * per_prompt]):
                    placed = PlacedMask.from_record(record, window, size)
                    if index not in whole:
                        placed = _owned(placed, grid.core(tile))
                        placed.point = input_point(prompts[index])
                    pieces[index].append((candidate, placed))
        return [mask for index in range(len(prompts)) for mask in self._stitch(pieces[index], index in whole)]

    @staticmethod
    def _stitch(pieces: list[tuple[int, PlacedMask]], whole: bool) -> list[PlacedMask]:
        """The masks of one prompt: its tile's, or each candidate's pieces joined."""
        if whole:
            return [mask for _, mask in pieces]
        by_candidate: dict[int, list[PlacedMask]] = defaultdict(list)
        for candidate, mask in pieces:
            by_candidate[candidate].append(mask)
        stitched = []
        for _, masks in sorted(by_candidate.items()):
            found = [mask for mask in masks if mask.area]
            stitched.append(join(found) if found else masks[0])
        return stitched


def _owned(mask: PlacedMask, core: Window) -> PlacedMask:
    """`mask` less its pixels outside `core` (the pixels its tile owns)."""
    return PlacedMask.from_mask(mask.within(core), (core.x0, core.y0), mask.image_size, mask.predicted_iou,
                                mask.stability_score, mask.point, mask.crop_box, mask.category_id)


class TiledAutomaticSegmenter:
    """Segment-everything on a large image: SAM's generator on each tile at full resolution, then
    masks merged over the seams (`merge_seams`)."""

    def __init__(self, segmenter: AutomaticSegmenter, tile: int, overlap: int, seam_iou: float = SEAM_IOU) -> None:
        check_tiling(tile, overlap)
        self.segmenter, self.tile, self.overlap, self.seam_iou = segmenter, tile, overlap, seam_iou

    def __call__(self, source: ImageSource, prompts: None = None) -> list[PlacedMask]:
        """One placed mask per object found."""
        size = (source.height, source.width)
        grid = TileGrid(source.height, source.width, self.tile, self.overlap)
        per_tile = []
        for window in grid:
            records = self.segmenter(source.read(window))
            per_tile.append([PlacedMask.from_record(record, window, size) for record in records])
        return merge_seams(per_tile, grid, self.seam_iou)


def tile_segmenter(segmenter: PromptSegmenter | AutomaticSegmenter, tile: int, overlap: int) -> TiledPromptSegmenter | TiledAutomaticSegmenter:
    """The tiled form of an untiled segmenter."""
    if isinstance(segmenter, PromptSegmenter):
        return TiledPromptSegmenter(segmenter, tile, overlap)
    return TiledAutomaticSegmenter(segmenter, tile, overlap)
