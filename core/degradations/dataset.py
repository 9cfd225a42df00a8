"""Files of the published Robust-Seg layout: `clear/`, `masks/*.npy` (bool (M, H, W)) and one
folder per degradation with the same file names."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from ..io import atomic_path
from ..errors import InputError

JPEG_QUALITY = 95


def find_mask(masks: Path, image: Path) -> Path:
    """The mask source of `image` in `masks`: <stem>.npy, <stem>.png (labels or binary) or a
    folder <stem>/ of binary mask images, one per object."""
    for candidate in (masks / f"{image.stem}.npy", masks / f"{image.stem}.png", masks / image.stem):
        if candidate.exists():
            return candidate
    stem = image.stem
    raise InputError(f"{masks}: no mask for {image.name} (looked for {stem}.npy, {stem}.png, {stem}/)")


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
