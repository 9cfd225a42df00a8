"""Reading images as (H, W, 3) uint8 RGB and writing images and masks atomically: the one image
reader and writer of every command."""

from __future__ import annotations

import os
import re
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from ..errors import InputError
from .files import atomic_path


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Converts gray, gray+alpha, RGB, RGBA of any integer or float depth to (H, W, 3) uint8.

    16-bit images are scaled by 255/65535, floats are taken as [0, 1], alpha is dropped.
    """
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"unsupported image shape {image.shape}")
    image = image[..., :3] if image.shape[2] >= 3 else image[..., :1]
    if image.dtype == np.uint8:
        pass
    elif image.dtype == np.uint16:
        image = np.round(image.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    elif np.issubdtype(image.dtype, np.floating):
        image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif image.dtype == np.bool_:
        image = image.astype(np.uint8) * 255
    else:
        info = np.iinfo(image.dtype)
        image = np.round(np.clip(image, 0, info.max).astype(np.float64) * (255.0 / info.max)).astype(np.uint8)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image)


def read_pixels(path: str | os.PathLike, what: str = "image", missing_hint: str = "") -> np.ndarray:
    """The first frame of an image file as stored (any dtype and channels); InputError naming the
    file and calling it `what` when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such {what} file{missing_hint}")
    try:
        return np.asarray(iio.imread(path, index=0))
    except Exception as error:  # imageio raises many types for corrupt files
        raise InputError(f"{path}: not a readable {what} ({_reason(error, path)})") from None


def _reason(error: Exception, path: Path) -> str:
    """'Type: first line' of a reader's error, without the file name (the message starts with it)."""
    detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if "Could not find a backend" in detail:  # imageio's words when no plugin knows the bytes
        detail = "no image reader recognises its format"
    detail = re.sub(r"`*" + re.escape(str(path)) + r"`*", "the file", detail)
    return f"{type(error).__name__}: {detail}" if detail else type(error).__name__


def read_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """An image file's (H, W) from its header, without decoding the pixels; InputError as `read_pixels`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such image file")
    try:
        shape = iio.improps(path, index=0).shape
    except Exception as error:  # imageio raises many types for corrupt files
        raise InputError(f"{path}: not a readable image ({_reason(error, path)})") from None
    if len(shape) not in (2, 3):
        raise InputError(f"{path}: not a readable image (unsupported image shape {shape})")
    return int(shape[0]), int(shape[1])


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file as (H, W, 3) uint8 RGB; raises InputError naming the file otherwise."""
    pixels = read_pixels(path)
    try:
        return to_rgb8(pixels)
    except ValueError as error:
        raise InputError(f"{path}: not a readable image ({error})") from None


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Writes an image atomically; the format follows the extension of `path`."""
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, image, extension=Path(path).suffix)


# zlib level for mask PNGs: OpenCV's default, which segment-anything's amg.py writes with. Level 6
# (Pillow's default) was 2.4x slower on a detailed 640x480 mask, for a file 1.6x smaller
# (benchmarks/bench_choices.py).
MASK_PNG_LEVEL = 1


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Writes a (H, W) mask atomically as an 8-bit PNG, 255 inside and 0 outside."""
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, mask.astype(np.uint8) * 255, extension=".png", compress_level=MASK_PNG_LEVEL)
