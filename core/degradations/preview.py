"""A labelled contact sheet of one image under every degradation, for a person to look at.

Labels are drawn with Pillow (installed with torchvision), so no font file or new dependency is needed.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from .dataset import file_seed
from .lqseg import LQSEG_TYPES, lqseg
from .mixed import mixed_degrade
from .registry import degrade, generator_from_seed

MIXED = "mixed"
CLEAR = "clear"
MAX_SIDE = 1024  # larger previews are degraded at this size: the sheet shows tiles of ~300 px anyway
LABEL_HEIGHT = 22
GAP = 4
BACKGROUND = (32, 32, 32)


def to_tensor(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1], contiguous (planar channels)."""
    planes = torch.as_tensor(np.array(image, dtype=np.uint8), device=device).permute(2, 0, 1).contiguous()
    return planes[None].float() / 255.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float in [0, 1] -> (B, H, W, 3) uint8 on the CPU."""
    return (images * 255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def apply(
    images: torch.Tensor, kind: str, level: int, seeds: Sequence[int], out: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Applies a registered degradation, the mixed chain, or LQSeg's chain (types LQ-1..LQ-3, whose level
    is in the name: `level` is not used), with one seeded generator per sample; registered types write
    into `out` when given (see `degrade`)."""
    generators = [generator_from_seed(s) for s in seeds]
    if kind == MIXED:
        return mixed_degrade(images, generator=generators)
    if kind in LQSEG_TYPES:
        return lqseg(images, LQSEG_TYPES[kind], generator=generators)
    return degrade(images, kind, level=level, generator=generators, out=out)


def _fit(image: torch.Tensor, side: int) -> torch.Tensor:
    height, width = image.shape[-2:]
    scale = side / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)


def contact_sheet(
    image: np.ndarray,
    kinds: Sequence[str],
    *,
    name: str,
    level: int,
    seed: int,
    tile: int = 300,
    columns: int = 6,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """(H, W, 3) uint8 -> sheet (H', W', 3) uint8: the clear image then one labelled tile per kind.

    Each tile uses the seed that `robustsam degrade` would use for a file called `name`.
    """
    clear = _fit(to_tensor(image, device), MAX_SIDE)
    tiles = [(CLEAR, clear)] + [(kind, apply(clear, kind, level, [file_seed(seed, kind, name)])) for kind in kinds]
    pictures = [(label, to_uint8(_fit(t, tile))[0]) for label, t in tiles]
    tile_h, tile_w = pictures[0][1].shape[:2]
    rows = -(-len(pictures) // columns)
    cols = min(columns, len(pictures))
    cell_w, cell_h = tile_w + GAP, tile_h + LABEL_HEIGHT + GAP
    sheet = Image.new("RGB", (cols * cell_w + GAP, rows * cell_h + GAP), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=15)
    for index, (label, picture) in enumerate(pictures):
        x = GAP + (index % columns) * cell_w
        y = GAP + (index // columns) * cell_h
        text = label if label in (CLEAR, MIXED, *LQSEG_TYPES) else f"{label} (level {level})"
        draw.text((x + 3, y + 3), text, fill=(255, 255, 255), font=font)
        sheet.paste(Image.fromarray(picture), (x, y + LABEL_HEIGHT))
    return np.asarray(sheet)
