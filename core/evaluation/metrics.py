"""Segmentation metrics: IoU, Dice, pixel accuracy, boundary IoU, and COCO mask AP via pycocotools.

Conventions: masks are boolean (H, W) (or (N, H, W) for the `batch_` variants); a prediction and a
ground truth that are both empty agree perfectly (IoU, Dice, boundary IoU = 1).
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

# Boundary IoU (Cheng et al., CVPR 2021): the boundary band is 2% of the image diagonal wide.
BOUNDARY_DILATION_RATIO = 0.02


def _as_batch(preds: np.ndarray, gts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    preds, gts = np.asarray(preds, dtype=bool), np.asarray(gts, dtype=bool)
    if preds.shape != gts.shape or preds.ndim != 3:
        raise ValueError(f"predictions and ground truths must both be (N, H, W), got {preds.shape} and {gts.shape}")
    return preds.reshape(len(preds), -1), gts.reshape(len(gts), -1)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, with 0 / 0 = 1 (two empty masks agree)."""
    safe = np.maximum(denominator, 1)
    return np.where(denominator > 0, numerator / safe, 1.0)


def batch_iou(preds: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """IoU of each pair of (N, H, W) masks: (N,) float64."""
    preds, gts = _as_batch(preds, gts)
    return _ratio((preds & gts).sum(1), (preds | gts).sum(1))


def batch_dice(preds: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """Dice 2|P n G| / (|P| + |G|) of each pair of (N, H, W) masks: (N,) float64."""
    preds, gts = _as_batch(preds, gts)
    return _ratio(2 * (preds & gts).sum(1), preds.sum(1) + gts.sum(1))


def batch_pixel_accuracy(preds: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """Fraction of pixels where prediction and ground truth agree, per pair of (N, H, W) masks: (N,)."""
    preds, gts = _as_batch(preds, gts)
    return (preds == gts).mean(1)


def _erode_axis(mask: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Binary erosion by a segment of 2 * radius + 1 pixels along `axis`; outside the image is background."""
    pad = [(0, 0)] * mask.ndim
    pad[axis] = (radius + 1, radius)
    background = np.cumsum(np.pad(~mask, pad, constant_values=True), axis=axis, dtype=np.int32)
    size = mask.shape[axis]
    upper = np.take(background, np.arange(2 * radius + 1, 2 * radius + 1 + size), axis=axis)
    lower = np.take(background, np.arange(0, size), axis=axis)
    return upper == lower


def mask_boundary(masks: np.ndarray, dilation_ratio: float = BOUNDARY_DILATION_RATIO) -> np.ndarray:
    """Inner boundary band of (N, H, W) masks: pixels within d of the background (chessboard distance,
    outside the image counts as background), d = max(1, round(dilation_ratio * image diagonal)).

    Same band as the reference implementation's mask minus its erosion by a 3x3 kernel d times.
    """
    masks = np.asarray(masks, dtype=bool)
    height, width = masks.shape[-2:]
    radius = max(1, int(round(dilation_ratio * math.hypot(height, width))))
    eroded = _erode_axis(_erode_axis(masks, radius, axis=-1), radius, axis=-2)
    return masks & ~eroded


def batch_boundary_iou(
    preds: np.ndarray, gts: np.ndarray, dilation_ratio: float = BOUNDARY_DILATION_RATIO
) -> np.ndarray:
    """Boundary IoU of each pair of (N, H, W) masks: IoU of their inner boundary bands. (N,) float64."""
    preds, gts = np.asarray(preds, dtype=bool), np.asarray(gts, dtype=bool)
    return batch_iou(mask_boundary(preds, dilation_ratio), mask_boundary(gts, dilation_ratio))


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union of two (H, W) boolean masks."""
    return float(batch_iou(pred[None], gt[None])[0])


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice coefficient of two (H, W) boolean masks."""
    return float(batch_dice(pred[None], gt[None])[0])


def pixel_accuracy(pred: np.ndarray, gt: np.ndarray) -> float:
    """Fraction of the (H, W) pixels labelled the same in both masks."""
    return float(batch_pixel_accuracy(pred[None], gt[None])[0])


def boundary_iou(pred: np.ndarray, gt: np.ndarray, dilation_ratio: float = BOUNDARY_DILATION_RATIO) -> float:
    """Boundary IoU of two (H, W) boolean masks."""
    return float(batch_boundary_iou(pred[None], gt[None], dilation_ratio)[0])


@dataclass
class ApInstance:
    """One ground-truth object and the mask predicted for it from its prompt.

    gt / pred: COCO RLEs (see `encode_rle`) on the same image; score: the model's predicted IoU.
    """

    image: str
    gt: dict
    pred: dict
    score: float
    category: int = 1


AP_KEYS = ("ap", "ap_s", "ap_m", "ap_l")


def mask_ap(instances: Sequence[ApInstance]) -> dict[str, float]:
    """COCO mask AP, AP_S, AP_M, AP_L (IoU 0.50:0.95, 100 detections) of prompted predictions.

    Every ground truth yields exactly one prediction, scored by its predicted IoU, so AP measures
    how well the masks match and how well the scores rank them. A size range without ground truth
    gives NaN (pycocotools' -1).
    """
    if not instances:
        return {key: math.nan for key in AP_KEYS}
    image_ids = {name: i + 1 for i, name in enumerate(sorted({inst.image for inst in instances}))}
    sizes = {inst.image: inst.gt["size"] for inst in instances}
    categories = sorted({inst.category for inst in instances})
    gt_annotations, predictions = [], []
    for index, inst in enumerate(instances):
        image_id = image_ids[inst.image]
        gt = {"size": inst.gt["size"], "counts": inst.gt["counts"].encode("ascii")}
        gt_annotations.append(
            {
                "id": index + 1,
                "image_id": image_id,
                "category_id": inst.category,
                "segmentation": gt,
                "area": float(mask_utils.area(gt)),
                "bbox": [float(v) for v in mask_utils.toBbox(gt)],
                "iscrowd": 0,
            }
        )
        predictions.append(
            {
                "image_id": image_id,
                "category_id": inst.category,
                "segmentation": {"size": inst.pred["size"], "counts": inst.pred["counts"].encode("ascii")},
                "score": float(inst.score),
            }
        )
    ground_truth = COCO()
    ground_truth.dataset = {
        "images": [{"id": i, "height": sizes[n][0], "width": sizes[n][1]} for n, i in image_ids.items()],
        "annotations": gt_annotations,
        "categories": [{"id": c, "name": str(c)} for c in categories],
    }
    # pycocotools prints progress on stdout; keep the CLI's output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
        evaluator = COCOeval(ground_truth, ground_truth.loadRes(predictions), iouType="segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # stats[0..5]: AP, AP50, AP75, AP_S, AP_M, AP_L.
    stats = [float(evaluator.stats[i]) for i in (0, 3, 4, 5)]
    return {key: (math.nan if value < 0 else value) for key, value in zip(AP_KEYS, stats)}
