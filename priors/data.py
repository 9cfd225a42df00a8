"""Paired restoration data: GoPro (`blur/` + `sharp/`) and RESIDE SOTS (`hazy/` + `clear/`) layouts.

A data root holds one or more folders named after the degraded kind, each beside a folder of clean
images: `ROOT/hazy` + `ROOT/clear` (SOTS), or `ROOT/<scene>/blur` + `ROOT/<scene>/sharp` (GoPro).
A degraded image pairs with the clean image of the same stem, else with the stem's part before the
first underscore (SOTS names hazy images `0001_0.8_0.2.jpg` after their clear `0001.png`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from core.data.datasets import is_image_file, list_images
from core.io import read_image, read_pixels
from core.errors import InputError


@dataclass(frozen=True)
class TaskLayout:
    """Folder names of one restoration task."""

    degraded: str
    clean: str


TASKS: dict[str, TaskLayout] = {
    "dehaze": TaskLayout("hazy", "clear"),
    "deblur": TaskLayout("blur", "sharp"),
}


@dataclass
class PairedImage:
    """One degraded image, its clean target (None when unknown) and its gray-coded prior map.

    `name` is the degraded file's path relative to the data root, with '/' separators; each image
    field is a path to read or an array already in memory: (H, W, 3) uint8 RGB, gray (H, W) uint8.
    """

    name: str
    degraded: Path | np.ndarray
    clean: Optional[Path | np.ndarray] = None
    gray: Optional[Path | np.ndarray] = None

    def load(self) -> tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
        """(degraded, clean, gray) as arrays; InputError when a file is unreadable or sizes differ."""
        degraded = read_image(self.degraded) if isinstance(self.degraded, Path) else self.degraded
        clean = read_image(self.clean) if isinstance(self.clean, Path) else self.clean
        gray = read_gray_map(self.gray) if isinstance(self.gray, Path) else self.gray
        for other, what in ((clean, "clean image"), (gray, "prior map")):
            if other is not None and other.shape[:2] != degraded.shape[:2]:
                source = self.clean if what == "clean image" else self.gray
                raise InputError(f"{source}: {what} is {other.shape[1]}x{other.shape[0]}, the degraded image {degraded.shape[1]}x{degraded.shape[0]}")
        return degraded, clean, gray


def read_gray_map(path: str | os.PathLike) -> np.ndarray:
    """Reads a gray-coded map PNG as (H, W) uint8; InputError naming the file otherwise."""
    gray = read_pixels(path, "prior map", missing_hint="; run `robustsam prior` for this image first")
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise InputError(f"{path}: a prior map must be a one-channel uint8 PNG, got {gray.dtype} {gray.shape}")
    return gray


def _clean_match(degraded: Path, clean_by_stem: dict[str, Path]) -> Optional[Path]:
    stem = degraded.stem
    return clean_by_stem.get(stem) or clean_by_stem.get(stem.split("_", 1)[0])


def find_pairs(root: str | os.PathLike, task: str) -> list[PairedImage]:
    """Every degraded image under `root` with its clean image, in a stable order."""
    root = Path(root)
    layout = TASKS[task]
    if not root.is_dir():
        raise InputError(f"{root}: no such data folder")
    folders = [root / layout.degraded] if (root / layout.degraded).is_dir() else []
    folders += sorted(p for p in root.rglob(layout.degraded) if p.is_dir() and p != root / layout.degraded)
    pairs = []
    for folder in folders:
        clean_folder = folder.parent / layout.clean
        if not clean_folder.is_dir():
            raise InputError(f"{folder}: no `{layout.clean}/` folder beside it")
        clean_by_stem = {p.stem: p for p in list_images(clean_folder)}
        for degraded in list_images(folder):
            clean = _clean_match(degraded, clean_by_stem)
            if clean is None:
                raise InputError(f"{degraded}: no clean image of the same name in {clean_folder}")
            pairs.append(PairedImage(degraded.relative_to(root).as_posix(), degraded, clean))
    if not pairs:
        raise InputError(f"{root}: no `{layout.degraded}/` + `{layout.clean}/` image pairs found")
    return pairs


def prior_stem(out_dir: str | os.PathLike, name: str) -> Path:
    """Where the prior files of the image named `name` (relative path) live, without their suffix."""
    return Path(out_dir) / Path(name).with_suffix("")


def prior_files(out_dir: str | os.PathLike, name: str) -> dict[str, Path]:
    """The gray-coded map PNG, partition .npz and features .npz paths of image `name` under `out_dir`."""
    stem = prior_stem(out_dir, name)
    return {
        "gray": stem.with_name(stem.name + ".gray.png"),
        "segments": stem.with_name(stem.name + ".segments.npz"),
        "features": stem.with_name(stem.name + ".features.npz"),
    }


def collect_images(sources: Sequence[str | os.PathLike], pattern: str = "**/*") -> list[tuple[str, Path]]:
    """(name, path) of every image named on the command line: files as given (name: the file name),
    directories searched with `pattern` (name: the path relative to that directory, '/'-separated).
    Empty when the folders hold no image: the caller decides whether that is an error."""
    found: dict[str, Path] = {}
    for source in map(Path, sources):
        if source.is_dir():
            matches = sorted(p for p in source.glob(pattern) if is_image_file(p))
            entries = [(p.relative_to(source).as_posix(), p) for p in matches]
        elif source.is_file():
            entries = [(source.name, source)]
        else:
            raise InputError(f"{source}: no such file or folder")
        for name, path in entries:
            if name in found and found[name] != path:
                raise InputError(f"{path}: same output name {name!r} as {found[name]}; give the images in separate runs")
            found[name] = path
    return list(found.items())
