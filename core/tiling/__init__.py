"""Large images in tiles: the tile grid, windowed readers (TIFF, GeoTIFF), prompts routed to tiles
and stitched, segment-everything merged over seams, tiled TIFF label output.

    source = open_source("scene.tif")              # reads only the windows asked for
    masks = TiledPromptSegmenter(PromptSegmenter(predictor), tile=1024, overlap=128)(source, prompts)
"""

from .degrade import SEAMLESS, degrade_tiled
from .geojson import TiledGeoJsonWriter, mask_polygons
from .geo import GeoTiffSource, map_prompts_to_pixels, prompts_to_pixels
from .grid import TileGrid, Window, check_tiling
from .merge import iou_within, merge_seams
from .placed import PlacedMask
from .segmenters import SEAM_IOU, TiledAutomaticSegmenter, TiledPromptSegmenter, tile_segmenter
from .sources import ArraySource, ImageSource, TiffSource, open_source
from .writers import TiledLabelWriter, tiled_writers, write_label_tiff

__all__ = [
    "ArraySource",
    "GeoTiffSource",
    "ImageSource",
    "PlacedMask",
    "SEAMLESS",
    "SEAM_IOU",
    "TiffSource",
    "TileGrid",
    "TiledAutomaticSegmenter",
    "TiledGeoJsonWriter",
    "TiledLabelWriter",
    "TiledPromptSegmenter",
    "Window",
    "check_tiling",
    "degrade_tiled",
    "iou_within",
    "map_prompts_to_pixels",
    "mask_polygons",
    "merge_seams",
    "open_source",
    "prompts_to_pixels",
    "tile_segmenter",
    "tiled_writers",
    "write_label_tiff",
]
