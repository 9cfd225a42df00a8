"""Metrics against values computed by hand on small masks, and COCO AP on a crafted case."""

import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from core.evaluation.metrics import (
    ApInstance,
    batch_boundary_iou,
    batch_dice,
    batch_iou,
    batch_pixel_accuracy,
    boundary_iou,
    dice,
    iou,
    mask_ap,
    mask_boundary,
    pixel_accuracy,
)
from core.io import encode_rle


def _square(size, top, left, side):
    mask = np.zeros((size, size), bool)
    mask[top : top + side, left : left + side] = True
    return mask


# Two 4x4 squares in an 8x8 image, offset by one pixel: overlap 3x3 = 9, union 16 + 16 - 9 = 23,
# 14 pixels differ out of 64.
A = _square(8, 2, 2, 4)
B = _square(8, 3, 3, 4)


def test_iou_dice_pixel_accuracy_by_hand():
    assert iou(A, B) == pytest.approx(9 / 23)
    assert dice(A, B) == pytest.approx(2 * 9 / 32)
    assert pixel_accuracy(A, B) == pytest.approx(50 / 64)


def test_empty_masks():
    empty = np.zeros((8, 8), bool)
    assert iou(empty, empty) == 1.0 and dice(empty, empty) == 1.0 and boundary_iou(empty, empty) == 1.0
    assert iou(empty, A) == 0.0 and dice(A, empty) == 0.0
    assert pixel_accuracy(empty, A) == pytest.approx(48 / 64)


def test_batched_variants_equal_pairwise_values():
    rng = np.random.default_rng(0)
    preds, gts = rng.random((5, 16, 16)) > 0.5, rng.random((5, 16, 16)) > 0.6
    for batched, single in (
        (batch_iou, iou),
        (batch_dice, dice),
        (batch_pixel_accuracy, pixel_accuracy),
        (batch_boundary_iou, boundary_iou),
    ):
        np.testing.assert_allclose(batched(preds, gts), [single(p, g) for p, g in zip(preds, gts)])
    with pytest.raises(ValueError):
        batch_iou(preds, gts[:, :8])


def test_boundary_iou_by_hand():
    # 8x8 image: the band is 1 pixel wide (2% of the diagonal rounds to 0, at least 1). Each square's
    # band is its 12-pixel ring; the rings share exactly (3, 5) and (5, 3).
    assert mask_boundary(A[None]).sum() == 12
    assert boundary_iou(A, B) == pytest.approx(2 / 22)


def test_boundary_band_width_and_image_edge():
    # 100x100: band width round(0.02 * 141.4) = 3, so a 20x20 square keeps a 14x14 interior.
    inner = _square(100, 40, 40, 20)
    assert mask_boundary(inner[None]).sum() == 400 - 14 * 14
    # Outside the image counts as background: a square in the corner has the same band.
    corner = _square(100, 0, 0, 20)
    band = mask_boundary(corner[None])[0]
    assert band.sum() == 400 - 14 * 14 and band[0, 10] and not band[10, 10]


def _reference_band(mask, radius):
    """The reference algorithm: pad one zero pixel, erode `radius` times with a 3x3 kernel, unpad."""
    eroded = np.pad(mask, 1)
    for _ in range(radius):
        padded = np.pad(eroded, 1, constant_values=True)
        eroded = np.logical_and.reduce(
            [padded[1 + dy : 1 + dy + eroded.shape[0], 1 + dx : 1 + dx + eroded.shape[1]] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        )
    return mask & ~eroded[1:-1, 1:-1]


def test_boundary_band_matches_iterated_erosion():
    rng = np.random.default_rng(1)
    masks = rng.random((4, 60, 90)) > 0.3  # ragged shapes; band width round(0.02 * 108.2) = 2
    expected = np.stack([_reference_band(m, 2) for m in masks])
    np.testing.assert_array_equal(mask_boundary(masks), expected)


def test_rle_round_trip():
    masks = np.stack([A, B, np.zeros_like(A)])
    rles = encode_rle(masks)
    assert all(isinstance(r["counts"], str) for r in rles)
    decoded = mask_utils.decode([{"size": r["size"], "counts": r["counts"].encode()} for r in rles])
    np.testing.assert_array_equal(decoded.transpose(2, 0, 1).astype(bool), masks)


def _crafted_instances(score_big, score_small):
    """A 40x40 (medium) object predicted exactly; a 5x5 (small) one predicted with 18 of its
    25 pixels, IoU 0.72, so it matches at thresholds 0.50..0.70 and misses at 0.75..0.95."""
    big = _square(128, 10, 10, 40)
    small = _square(128, 80, 80, 5)
    small_pred = small.copy()
    small_pred[84, 80:85] = False
    small_pred[83, 83:85] = False
    assert iou(small_pred, small) == pytest.approx(0.72)
    gts, preds = encode_rle(np.stack([big, small])), encode_rle(np.stack([big, small_pred]))
    return [ApInstance("img", gts[0], preds[0], score_big), ApInstance("img", gts[1], preds[1], score_small)]


def test_mask_ap_crafted_case():
    # Thresholds 0.50-0.70 (5 of 10): both match, AP 1. Thresholds 0.75-0.95: the exact mask ranks
    # first (precision 1 up to recall 0.5), the miss adds nothing: 51 of 101 recall points, AP 51/101.
    result = mask_ap(_crafted_instances(0.9, 0.8))
    assert result["ap"] == pytest.approx((5 + 5 * 51 / 101) / 10)
    # Only the small object counts for AP_S (matched at 5 thresholds), only the big one for AP_M.
    assert result["ap_s"] == pytest.approx(0.5)
    assert result["ap_m"] == pytest.approx(1.0)
    assert math.isnan(result["ap_l"])  # no large object


def test_mask_ap_depends_on_score_ranking():
    # The miss now ranks first: at 0.75-0.95 precision is 0.5 up to recall 0.5, AP (5 + 5 * 25.5 / 101) / 10.
    result = mask_ap(_crafted_instances(0.7, 0.8))
    assert result["ap"] == pytest.approx((5 + 5 * 25.5 / 101) / 10)


def test_mask_ap_without_instances_is_nan():
    assert all(math.isnan(v) for v in mask_ap([]).values())
