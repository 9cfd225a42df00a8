"""Segmentation samples and the dataset readers shared by training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass
class Sample:
    """One image with all its object masks.

    image: (H, W, 3) uint8 RGB, possibly degraded; masks: (M, H, W) bool;
    clear: the clean (H, W, 3) uint8 image when `image` is a degraded copy of it, else None.
    """

    name: str
    image: np.ndarray
    masks: np.ndarray
    clear: Optional[np.ndarray] = None
