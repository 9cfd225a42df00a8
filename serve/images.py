"""The images a server shows: files under one folder, reached only by keys that stay inside it, and
their degraded previews.

    folder = ImageFolder("photos/")
    folder.keys()                          # ["a.jpg", "b.png"], as `robustsam segment photos/` names them
    image = folder.read("a.jpg", View("fog", level=3, seed=0))
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Optional

import numpy as np

from core.data.datasets import is_image_file, list_images
from core.io import read_image, read_image_size
from core.degradations import LEVELS, LQSEG_TYPES, PUBLISHED
from core.degradations.dataset import file_seed
from core.degradations.preview import apply, to_tensor, to_uint8

# The degradations a page offers: the 15 published types, then GleSAM's LQSeg levels.
VIEW_KINDS = PUBLISHED + tuple(LQSEG_TYPES)


# Decoded RGB plus the float copies a degraded view makes: 100 MP is about 1.5 GB at its peak.
DEFAULT_MAX_PIXELS = 100_000_000


class ImageNotFound(LookupError):
    """A key that names no image under the folder (missing, outside it, or not an image)."""


class ImageTooLarge(ValueError):
    """An image over the server's pixel limit (read from its header, never decoded)."""


@dataclass(frozen=True)
class View:
    """How an image is shown to the models: clear (`kind` None), or degraded by `kind` at `level`
    with the generator `robustsam degrade --seed seed` would use for the same file."""

    kind: Optional[str] = None
    level: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in VIEW_KINDS:
            raise ValueError(f"unknown degradation {self.kind!r} (expected one of {', '.join(VIEW_KINDS)})")
        if self.level not in LEVELS:
            raise ValueError(f"level must be in {LEVELS.start}..{LEVELS.stop - 1}, not {self.level}")

    @property
    def key(self) -> tuple:
        """What identifies the pixels: the level and seed of a clear view do not matter."""
        if self.kind is None:
            return ()
        return (self.kind, None if self.kind in LQSEG_TYPES else self.level, self.seed)


CLEAR = View()


class ImageFolder:
    """The image files under `root` (sub-folders too when `recursive`), keyed by their POSIX path
    relative to it, leaving out `exclude` (an output folder inside it) and any link leading out.
    Images of more than `max_pixels` pixels are refused before they are decoded (None: no limit)."""

    def __init__(self, root: str | os.PathLike, recursive: bool = False, exclude: Optional[str | os.PathLike] = None,
                 max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> None:
        self.root = Path(root)
        self.recursive = recursive
        self.max_pixels = max_pixels
        self._real_root = self.root.resolve()
        self._exclude = Path(exclude).resolve() if exclude is not None else None

    def _allowed(self, path: Path) -> bool:
        real = path.resolve()
        inside = real.is_relative_to(self._real_root) and real != self._real_root
        return inside and is_image_file(path) and not (self._exclude is not None and real.is_relative_to(self._exclude))

    def keys(self) -> list[str]:
        """The keys of every image, sorted."""
        return sorted(path.relative_to(self.root).as_posix() for path in list_images(self.root, self.recursive) if self._allowed(path))

    def path(self, key: str) -> Path:
        """The file of `key`; ImageNotFound unless it is a key `keys()` lists: a relative path without
        '..' to an image under the folder (after following links) at the depth the folder is listed."""
        parts = PurePosixPath(key).parts
        # Only keys as `keys()` spells them: relative, no '..', no '\\', nothing PurePosixPath would tidy.
        plain = bool(parts) and PurePosixPath(key).as_posix() == key and "\\" not in key and "\x00" not in key
        plain = plain and not key.startswith("/") and ".." not in parts and (self.recursive or len(parts) == 1)
        path = self.root.joinpath(*parts) if plain else None
        if path is None or not self._allowed(path):
            raise ImageNotFound(f"no image '{key}' in {self.root}")
        return path

    def read(self, key: str, view: View = CLEAR) -> np.ndarray:
        """The (H, W, 3) uint8 image of `key` as `view` shows it; InputError for an unreadable file,
        ImageTooLarge for one over `max_pixels`."""
        path = self.path(key)
        if self.max_pixels is not None:
            height, width = read_image_size(path)
            if height * width > self.max_pixels:
                raise ImageTooLarge(f"image '{key}' is {width}x{height}, {height * width:,} pixels: over this server's "
                                    f"limit of {self.max_pixels:,} (robustsam serve --max-megapixels)")
        image = read_image(path)
        if view.kind is None:
            return image
        seed = file_seed(view.seed, view.kind, path.name)
        return to_uint8(apply(to_tensor(image), view.kind, view.level, [seed]))[0]
