"""Mask Average Pooling (MAP): every pixel of a segment takes the segment's mean feature.

Segments are given as a label map (B, H, W) int64: label m in 0..M_b-1 marks segment m of image b,
-1 marks a pixel in no segment. A segment partition (the masks tile the image) has no -1 pixels;
they appear when mask dropout treats segments as uncovered.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def labels_from_partition(masks: np.ndarray) -> np.ndarray:
    """(M, H, W) {0, 1} disjoint masks -> (H, W) int64 labels, -1 where no mask covers the pixel."""
    masks = np.asarray(masks).astype(bool)
    if masks.ndim != 3:
        raise ValueError(f"segment masks must be (M, H, W), got shape {masks.shape}")
    if masks.shape[0] == 0:
        return np.full(masks.shape[1:], -1, dtype=np.int64)
    if (masks.sum(0) > 1).any():
        raise ValueError("segment masks overlap; a partition needs disjoint masks")
    return np.where(masks.any(0), masks.argmax(0), -1).astype(np.int64)


def drop_segments(labels: torch.Tensor, rate: float = 0.5, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Mask dropout: per image, int(rate * M_b) random segments become uncovered (-1).

    labels: (B, H, W) int64, segments numbered 0..M_b-1 (M_b = max label + 1). Returns a new tensor.
    """
    batch = labels.shape[0]
    flat = labels.reshape(batch, -1)
    counts = flat.max(dim=1).values + 1  # (B,) segments per image
    slots = int(counts.max().item()) if batch else 0
    if slots == 0:
        return labels.clone()
    scores = torch.rand((batch, slots), generator=generator, device="cpu").to(labels.device)
    slot_index = torch.arange(slots, device=labels.device)[None]
    scores = scores.masked_fill(slot_index >= counts[:, None], float("inf"))
    ranks = scores.argsort(dim=1).argsort(dim=1)
    dropped = ranks < (counts.double() * rate).floor().long()[:, None]  # (B, slots)
    pixel_dropped = dropped.gather(1, flat.clamp(min=0)) & (flat >= 0)
    return flat.masked_fill(pixel_dropped, -1).reshape(labels.shape)


def mask_average_pool(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """features (B, C, H, W), labels (B, H, W) -> (B, C, H, W) per-segment means.

    Pixels labelled -1 take the mean over all -1 pixels of their image. Labels of another size are
    resized to the features' size (nearest).
    """
    batch, channels, height, width = features.shape
    if labels.shape[-2:] != features.shape[-2:]:
        labels = F.interpolate(labels[:, None].float(), size=(height, width), mode="nearest")[:, 0].long()
    labels = labels.to(features.device)
    slots = int(labels.max().item()) + 2  # slot 0 of every image: its uncovered pixels
    index = (labels.reshape(batch, -1) + 1) + torch.arange(batch, device=features.device)[:, None] * slots
    index = index.reshape(-1)
    values = features.permute(0, 2, 3, 1).reshape(-1, channels)
    sums = values.new_zeros(batch * slots, channels).index_add_(0, index, values)
    areas = values.new_zeros(batch * slots).index_add_(0, index, values.new_ones(index.shape[0]))
    means = sums / areas.clamp(min=1)[:, None]
    return means[index].reshape(batch, height, width, channels).permute(0, 3, 1, 2)


class MaskAveragePool(nn.Module):
    """Parameter-free MAP with training-only mask dropout of int(dropout * M_b) segments per image."""

    def __init__(self, dropout: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"mask dropout must be in [0, 1), got {dropout}")
        self.dropout = dropout

    def forward(self, features: torch.Tensor, labels: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """features (B, C, H, W), labels (B, H', W') int64 -> (B, C, H, W)."""
        if self.training and self.dropout > 0:
            labels = drop_segments(labels, self.dropout, generator)
        return mask_average_pool(features, labels)
