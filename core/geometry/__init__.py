"""Mask geometry: binary masks as polygons with holes and back, and their COCO polygon form."""

from .coco import bridge_rings, flatten_ring, to_coco_segmentation, unflatten_ring
from .polygons import DEFAULT_TOLERANCE, GEOMETRY_PACKAGES, Polygon, mask_to_polygons, polygons_to_mask

__all__ = [
    "DEFAULT_TOLERANCE",
    "GEOMETRY_PACKAGES",
    "Polygon",
    "bridge_rings",
    "flatten_ring",
    "mask_to_polygons",
    "polygons_to_mask",
    "to_coco_segmentation",
    "unflatten_ring",
]
