"""The DAVIS protocol's measures: J (region similarity), F (boundary accuracy) and J&F.

Definitions follow the DAVIS 2017 evaluation (Perazzi et al. 2016; Pont-Tuset et al. 2017):

* J is the IoU of the predicted and annotated masks; 1 when both are empty.
* F is the F-measure of boundary precision and recall: boundaries are the one-pixel maps of
  `boundary_map`, and a boundary pixel matches when the other boundary lies within a disk of
  ceil(0.008 * image diagonal) pixels. No boundary on either side gives 1; on one side only, 0.
* Void pixels (label 255 in DAVIS annotations) count for neither.
* Semi-supervised scores leave out the first frame (it holds the prompt) and the last; a
  sequence's J (F) is the mean over its objects of their mean over frames, and J&F = (J + F) / 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

VOID_LABEL = 255
BOUNDARY_TOLERANCE = 0.008  # of the image diagonal


def region_similarity(gt: np.ndarray, pred: np.ndarray, void: Optional[np.ndarray] = None) -> float:
    """J of two (H, W) bool masks, void pixels (H, W) bool left out."""
    keep = ~void if void is not None else np.ones_like(gt, dtype=bool)
    union = np.count_nonzero((gt | pred) & keep)
    return 1.0 if union == 0 else np.count_nonzero(gt & pred & keep) / union


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool one-pixel boundary of a (H, W) bool mask: pixels that differ from their right,
    lower or lower-right neighbour (DAVIS's `seg2bmap`, whose boundary sits half a pixel towards
    the origin); on the last row and column only the neighbour inside the image counts."""
    east = np.zeros_like(mask)
    south = np.zeros_like(mask)
    south_east = np.zeros_like(mask)
    east[:, :-1] = mask[:, 1:]
    south[:-1, :] = mask[1:, :]
    south_east[:-1, :-1] = mask[1:, 1:]
    boundary = (mask ^ east) | (mask ^ south) | (mask ^ south_east)
    boundary[-1, :] = mask[-1, :] ^ east[-1, :]
    boundary[:, -1] = mask[:, -1] ^ south[:, -1]
    boundary[-1, -1] = False
    return boundary


def boundary_radius(height: int, width: int, tolerance: float = BOUNDARY_TOLERANCE) -> int:
    """DAVIS's matching distance in pixels: ceil(tolerance * diagonal), or `tolerance` when >= 1."""
    return int(tolerance) if tolerance >= 1 else math.ceil(tolerance * math.hypot(height, width))


def _dilate(boundary: np.ndarray, radius: int) -> np.ndarray:
    """Dilation of a (H, W) bool map by the disk x^2 + y^2 <= radius^2."""
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    disk = (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).float()[None, None]
    hits = F.conv2d(torch.from_numpy(boundary).float()[None, None], disk, padding=radius)
    return hits[0, 0].numpy() > 0.5


def boundary_accuracy(
    gt: np.ndarray, pred: np.ndarray, void: Optional[np.ndarray] = None, tolerance: float = BOUNDARY_TOLERANCE
) -> float:
    """F of two (H, W) bool masks, void pixels (H, W) bool left out."""
    if void is not None:
        gt, pred = gt & ~void, pred & ~void
    gt_boundary, pred_boundary = boundary_map(gt), boundary_map(pred)
    n_gt, n_pred = int(gt_boundary.sum()), int(pred_boundary.sum())
    if n_gt == 0 or n_pred == 0:
        return 1.0 if n_gt == n_pred else 0.0
    radius = boundary_radius(*gt.shape, tolerance)
    precision = np.count_nonzero(pred_boundary & _dilate(gt_boundary, radius)) / n_pred
    recall = np.count_nonzero(gt_boundary & _dilate(pred_boundary, radius)) / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@dataclass
class SequenceScores:
    """Per-frame J and F of each object of one sequence, added frame by frame (nothing else is
    kept, so memory does not grow with the frames' size)."""

    num_frames: int
    j: dict[int, dict[int, float]] = field(default_factory=dict)
    f: dict[int, dict[int, float]] = field(default_factory=dict)

    def add(self, frame: int, gt_labels: np.ndarray, pred: dict[int, np.ndarray], obj_ids: list[int]) -> None:
        """Scores frame `frame`: `gt_labels` (H, W) object ids (VOID_LABEL void, 0 background),
        `pred` the predicted (H, W) bool mask per object id (a missing object is an empty mask).
        The first and last frames are not scored (the semi-supervised protocol)."""
        if frame in (0, self.num_frames - 1):
            return
        void = gt_labels == VOID_LABEL
        empty = np.zeros(gt_labels.shape, dtype=bool)
        for obj_id in obj_ids:
            gt, mask = gt_labels == obj_id, pred.get(obj_id, empty)
            self.j.setdefault(obj_id, {})[frame] = region_similarity(gt, mask, void)
            self.f.setdefault(obj_id, {})[frame] = boundary_accuracy(gt, mask, void)

    def object_means(self) -> tuple[list[float], list[float]]:
        """Each object's mean J and mean F over the scored frames."""
        j = [float(np.mean(list(frames.values()))) for frames in self.j.values()]
        f = [float(np.mean(list(frames.values()))) for frames in self.f.values()]
        return j, f

    def means(self) -> dict[str, float]:
        """{"J": ..., "F": ..., "J&F": ...}: means over objects of their means over frames (NaN
        when no frame was scored)."""
        return pooled_means([self])


def pooled_means(sequences: list[SequenceScores]) -> dict[str, float]:
    """DAVIS's benchmark numbers over sequences: J and F averaged over every object of every
    sequence (each object weighs the same), J&F their mean; NaN when nothing was scored."""
    j, f = [], []
    for scores in sequences:
        object_j, object_f = scores.object_means()
        j += object_j
        f += object_f
    if not j:
        return {"J": math.nan, "F": math.nan, "J&F": math.nan}
    mean_j, mean_f = float(np.mean(j)), float(np.mean(f))
    return {"J": mean_j, "F": mean_f, "J&F": (mean_j + mean_f) / 2}
