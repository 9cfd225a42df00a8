"""Files of the published Robust-Seg layout: `clear/`, `masks/*.npy` (bool (M, H, W)) and one
folder per degradation with the same file names."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import List

import imageio.v3 as iio
import numpy as np

from ..errors import InputError
from ..io import atomic_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
JPEG_QUALITY = 95


def list_images(folder: Path) -> List[Path]:
    """The image files directly in `folder`, sorted by name (the layout pairs files by sorted name)."""
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of images")
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise InputError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return images


def find_mask(masks: Path, image: Path) -> Path:
    """The mask source of `image` in `masks`: <stem>.npy, <stem>.png (labels or binary) or a
    folder <stem>/ of binary mask images, one per object."""
    for candidate in (masks / f"{image.stem}.npy", masks / f"{image.stem}.png", masks / image.stem):
        if candidate.exists():
            return candidate
    stem = image.stem
    raise InputError(f"{masks}: no mask for {image.name} (looked for {stem}.npy, {stem}.png, {stem}/)")


def _label_masks(labels: np.ndarray) -> np.ndarray:
    """(H, W) integer labels -> (M, H, W) bool, one mask per nonzero label in increasing order."""
    values = np.unique(labels)
    values = values[values != 0]
    return labels[None] == values[:, None, None]


def _masks_from_image(array: np.ndarray) -> np.ndarray:
    """A label or binary mask image -> (M, H, W) bool. Colour images: each non-black colour is a label."""
    if array.ndim == 3:
        rgb = array[..., :3] if array.shape[2] >= 3 else array[..., :1]
        if rgb.shape[2] == 3 and not np.all(rgb == rgb[..., :1]):
            _, inverse = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
            labels = inverse.reshape(rgb.shape[:2]) + 1
            labels[np.all(rgb == 0, axis=2)] = 0
            array = labels
        else:
            array = rgb[..., 0]
    return _label_masks(array)


def read_masks(source: Path, height: int, width: int) -> np.ndarray:
    """Reads the masks of one image as (M, H, W) bool; InputError naming the file when unreadable
    or of another size than the image."""
    try:
        if source.is_dir():
            files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise InputError(f"{source}: no mask images in the folder")
            planes = [np.asarray(iio.imread(p, index=0)) for p in files]
            masks = np.stack([(p if p.ndim == 2 else p[..., :3].max(axis=2)) != 0 for p in planes])
        elif source.suffix == ".npy":
            array = np.load(source, allow_pickle=False)
            if array.ndim == 2:
                masks = _label_masks(array)
            elif array.ndim == 3:
                masks = array != 0
            else:
                raise InputError(f"{source}: expected (H, W) labels or (M, H, W) masks, got shape {array.shape}")
        else:
            masks = _masks_from_image(np.asarray(iio.imread(source, index=0)))
    except InputError:
        raise
    except Exception as error:  # numpy and imageio raise many types for corrupt files
        raise InputError(f"{source}: not a readable mask ({type(error).__name__}: {error})".splitlines()[0]) from None
    if masks.shape[1:] != (height, width):
        raise InputError(f"{source}: masks are {masks.shape[2]}x{masks.shape[1]}, the image is {width}x{height}")
    return masks.astype(bool)


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
