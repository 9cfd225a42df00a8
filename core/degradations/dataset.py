"""Files of the published Robust-Seg layout: `clear/`, `masks/*.npy` (bool (M, H, W)) and one
folder per degradation with the same file names."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import List

import imageio.v3 as iio
import numpy as np

from ..data.datasets import IMAGE_EXTENSIONS
from ..data.datasets import list_images as images_in
from ..data.datasets import read_masks as read_object_masks
from ..errors import InputError
from ..data.io import atomic_path, read_pixels

JPEG_QUALITY = 95


def list_images(folder: Path) -> List[Path]:
    """The image files directly in `folder`, sorted by name (the layout pairs files by sorted name)."""
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of images")
    images = images_in(folder)
    if not images:
        raise InputError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    return images


def find_mask(masks: Path, image: Path) -> Path:
    """The mask source of `image` in `masks`: <stem>.npy, <stem>.png (labels or binary) or a
    folder <stem>/ of binary mask images, one per object."""
    for candidate in (masks / f"{image.stem}.npy", masks / f"{image.stem}.png", masks / image.stem):
        if candidate.exists():
            return candidate
    stem = image.stem
    raise InputError(f"{masks}: no mask for {image.name} (looked for {stem}.npy, {stem}.png, {stem}/)")


def read_masks(source: Path, height: int, width: int) -> np.ndarray:
    """Reads the masks of one image as (M, H, W) bool from a `.npy` array or a mask image
    (`core.data.datasets.read_masks`) or a folder of binary mask images, one per object; InputError naming
    the file when unreadable or of another size than the image."""
    if source.is_dir():
        files = images_in(source)
        if not files:
            raise InputError(f"{source}: no mask images in the folder")
        planes = [read_pixels(p, "mask image") for p in files]
        masks = np.stack([(p if p.ndim == 2 else p[..., :3].max(axis=2)) != 0 for p in planes])
    else:
        masks = read_object_masks(source)
    if masks.shape[1:] != (height, width):
        raise InputError(f"{source}: masks are {masks.shape[2]}x{masks.shape[1]}, the image is {width}x{height}")
    return masks


def file_seed(seed: int, kind: str, name: str) -> int:
    """The seed of one output file: a hash of (seed, type, file name), so every file is the same
    whatever the batch size, the order or how often a run was resumed."""
    digest = hashlib.blake2b(f"{seed}/{kind}/{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 2  # 62 bits, as `sample_generators` draws


def save_image(path: Path, image: np.ndarray) -> None:
    """Writes (H, W, 3) uint8 atomically; JPEG files at quality 95 so the saved file adds little."""
    options = {"quality": JPEG_QUALITY} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, image, extension=path.suffix, **options)


def save_masks(path: Path, masks: np.ndarray) -> None:
    """Writes (M, H, W) bool as .npy atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, masks.astype(bool), allow_pickle=False)


def copy_clear(source: Path, target: Path) -> None:
    """Copies the clear image byte for byte, atomically."""
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
