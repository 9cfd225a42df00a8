"""COCO run-length encoding of masks (pycocotools), as results files and metrics store them."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def encode_rle(masks: np.ndarray) -> list[dict]:
    """COCO run-length encodings of (N, H, W) boolean masks, with `counts` as str (JSON-serialisable)."""
    rles = mask_utils.encode(np.asfortranarray(np.asarray(masks, dtype=np.uint8).transpose(1, 2, 0)))
    return [{"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")} for rle in rles]
