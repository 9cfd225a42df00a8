"""core.geometry: masks -> polygons -> masks, pixel-edge coordinates, COCO polygons read by pycocotools."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools.coco import COCO
from shapely.geometry import Polygon as ShapelyPolygon

from core.geometry import (
    DEFAULT_TOLERANCE,
    mask_to_polygons,
    polygons_to_mask,
    to_coco_segmentation,
    unflatten_ring,
)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _vertex_count(polygons) -> int:
    return sum(len(ring) for polygon in polygons for ring in polygon)


def _test_masks() -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[:96, :128]
    radius = np.hypot(xx - 40, yy - 44)
    annulus_with_island = ((radius < 30) & (radius >= 14)) | (radius < 6)
    several = np.zeros((96, 128), dtype=bool)
    several[5:20, 70:120] = True  # a bar with two holes
    several[9:14, 80:86] = False
    several[9:14, 100:110] = False
    several[60:96, 100:128] = True  # touching the image border
    several[40, 60] = True  # a single pixel
    several |= np.hypot(xx - 75, yy - 70) < 12
    rng = np.random.default_rng(0)
    blobs = np.zeros((96, 128))
    for _ in range(3):  # smoothed noise: ragged outlines with holes
        blobs += np.roll(rng.random((96, 128)), 1, axis=0)
    blobs = np.kron(blobs[::8, ::8] > 1.6, np.ones((8, 8), dtype=bool))
    return {"annulus_with_island": annulus_with_island, "several": several, "blocks": blobs}


@pytest.mark.parametrize("name", list(_test_masks()))
@pytest.mark.parametrize("tolerance", [0.0, DEFAULT_TOLERANCE])
def test_round_trip_keeps_the_mask(name, tolerance):
    mask = _test_masks()[name]
    back = polygons_to_mask(mask_to_polygons(mask, tolerance=tolerance), *mask.shape)
    assert np.array_equal(back, mask)


@pytest.mark.parametrize("name", list(_test_masks()))
def test_coarser_tolerance_trades_vertices_for_accuracy(name):
    mask = _test_masks()[name]
    fine, coarse = mask_to_polygons(mask), mask_to_polygons(mask, tolerance=1.0)
    assert _vertex_count(coarse) < _vertex_count(fine)
    assert _iou(polygons_to_mask(coarse, *mask.shape), mask) >= 0.95


def test_components_holes_and_orientation():
    polygons = mask_to_polygons(_test_masks()["annulus_with_island"])
    # The island inside the annulus' hole is a component of its own, not a hole.
    assert [len(polygon) for polygon in polygons] == [2, 1]
    for polygon in polygons:
        shape = ShapelyPolygon(polygon[0], polygon[1:])
        assert shape.is_valid
        assert shape.exterior.is_ccw and not any(ring.is_ccw for ring in shape.interiors)
    bar = mask_to_polygons(_test_masks()["several"])[0]
    assert len(bar) == 3


def test_pixel_edge_coordinates():
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:5, 3:7] = True  # rows 2..4, columns 3..6
    (polygon,) = mask_to_polygons(mask, tolerance=0.0)
    assert ShapelyPolygon(polygon[0]).bounds == (3.0, 2.0, 7.0, 5.0)
    assert polygon[0].shape[1] == 2 and not np.array_equal(polygon[0][0], polygon[0][-1])


@pytest.mark.parametrize("name", list(_test_masks()))
def test_coco_polygons_read_back_by_pycocotools(name):
    mask = _test_masks()[name]
    polygons = mask_to_polygons(mask)
    height, width = mask.shape
    coco = COCO()
    coco.dataset = {
        "images": [{"id": 1, "height": height, "width": width}],
        "categories": [{"id": 1, "name": "object"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": to_coco_segmentation(polygons)}],
    }
    coco.createIndex()
    read = coco.annToMask(coco.anns[1]).astype(bool)
    assert _iou(read, mask) >= 0.98
    assert np.array_equal(read, polygons_to_mask(polygons, height, width))


def test_bad_arguments():
    with pytest.raises(ValueError, match="even number"):
        unflatten_ring([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="tolerance"):
        mask_to_polygons(np.ones((4, 4), dtype=bool), tolerance=-1)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        mask_to_polygons(np.ones((4, 4, 3), dtype=bool))
    assert mask_to_polygons(np.zeros((5, 5), dtype=bool)) == []
