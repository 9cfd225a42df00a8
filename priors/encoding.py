"""Prior encodings of automatic masks: the gray-coded mask map and the segment partition."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def mask_gray_value(index: int) -> int:
    """The gray value mask number `index` (generator output order) adds to the map.

    2 (i + 1) for i < 127, else 2 (255 - i) - 1: even values first, then odd values counting down,
    so the first 254 masks get distinct values (negative for i >= 256, removed by the final clip).
    """
    if index < 0:
        raise ValueError(f"mask index must be >= 0, got {index}")
    return 2 * (index + 1) if index < 127 else 2 * (255 - index) - 1


def gray_coded_map(masks: np.ndarray | Sequence[np.ndarray], shape: tuple[int, int] | None = None) -> np.ndarray:
    """Masks (M, H, W) of any truthy dtype, in generator order -> (H, W) uint8 gray-coded map.

    Overlapping masks add their values; the sum is clipped to 0..255; uncovered pixels are 0.
    `shape` gives (H, W) when there are no masks.
    """
    masks = [np.asarray(mask, dtype=bool) for mask in masks]
    if not masks:
        if shape is None:
            raise ValueError("gray_coded_map needs `shape` when there are no masks")
        return np.zeros(shape, dtype=np.uint8)
    total = np.zeros(masks[0].shape, dtype=np.int64)
    for index, mask in enumerate(masks):
        total[mask] += mask_gray_value(index)
    return np.clip(total, 0, 255).astype(np.uint8)


def segment_partition(gray_map: np.ndarray) -> np.ndarray:
    """(H, W) gray-coded map -> (M, H, W) uint8 {0, 1} masks, one per distinct gray value (ascending).

    The masks tile the image: every pixel is in exactly one of them (value 0, uncovered, included).
    """
    gray_map = np.asarray(gray_map)
    if gray_map.ndim != 2:
        raise ValueError(f"gray-coded map must be (H, W), got shape {gray_map.shape}")
    values, inverse = np.unique(gray_map, return_inverse=True)
    inverse = inverse.reshape(gray_map.shape)
    return (inverse[None] == np.arange(len(values))[:, None, None]).astype(np.uint8)


def masks_from_records(records: Sequence[dict], shape: tuple[int, int]) -> np.ndarray:
    """SAM generator records (output_mode 'binary_mask') -> (M, H, W) bool, in the records' order."""
    if not records:
        return np.zeros((0, *shape), dtype=bool)
    return np.stack([np.asarray(record["segmentation"], dtype=bool) for record in records])
