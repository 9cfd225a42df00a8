"""Seeded scenes textured from real photographs, with exact instance masks.

The photographs are the sample images that scikit-image and scikit-learn install with themselves
(nothing is downloaded). A scene is a crop of one photograph as background with occluding layers on
top: each layer is a shape (ellipses, polygons, rings, thin polylines, blobs with holes, irregular
noise regions) filled with a crop of another photograph, recoloured and shaded. Later layers occlude
earlier ones and each mask is what stays visible, so masks never overlap. The photographs are split
once: the `held_out` split uses photographs that the `train` split never shows.
"""

from __future__ import annotations

from functools import lru_cache, partial
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .datasets import Sample
from .scenes import Grid, SeededScenes, layered_sample, _blob, _crescent, _ellipse, _grid, _polyline, _rectangle, _ring, _smooth_noise, _star_polygon

# scikit-image loaders by name; "china" and "flower" come from scikit-learn.
TRAIN_PHOTOS = (
    "brick", "grass", "gravel", "coins", "colorwheel", "hubble_deep_field", "immunohistochemistry", "logo",
    "microaneurysms", "moon", "page", "retina", "text", "cell", "clock", "china", "flower",
)
# The photographs of everyday objects a user tries first; never seen in training.
HELD_OUT_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera")
PHOTO_SPLITS = {"train": TRAIN_PHOTOS, "held_out": HELD_OUT_PHOTOS}

# Photographs are kept at most this many pixels on their longer side: crops are then cheap to resize.
_MAX_SIDE = 320
# Scenes a dataset keeps once made (about 0.1 MB each at 128 px): training revisits every scene each
# epoch, and making one costs more than a tiny model's step on it.
_CACHED_SCENES = 4096


def _downscale(image: np.ndarray, max_side: int) -> np.ndarray:
    """(H, W, 3) uint8 -> float32 in [0, 1], area-averaged so its longer side is at most `max_side`."""
    from skimage.transform import resize

    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    target = (max(1, round(height * scale)), max(1, round(width * scale)))
    return resize(image, target, order=1, anti_aliasing=scale < 1, preserve_range=True).astype(np.float32) / 255


def photograph(name: str) -> np.ndarray:
    """The photograph `name` at its own size, (H, W, 3) uint8 (gray ones as 3 equal channels, alpha dropped)."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        image = load_sample_image(f"{name}.jpg")
    else:
        import skimage.data

        if name not in TRAIN_PHOTOS + HELD_OUT_PHOTOS:
            raise ValueError(f"unknown photograph {name!r}")
        image = getattr(skimage.data, name)()
    image = np.asarray(image, dtype=np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


@lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray:
    """The photograph `name` as (H, W, 3) float32 in [0, 1], longer side <= 320 px."""
    return _downscale(photograph(name), _MAX_SIDE)


def _resize_bilinear(patch: np.ndarray, size: int) -> np.ndarray:
    """(h, w, 3) float32 -> (size, size, 3) by bilinear sampling at pixel centres."""
    tensor = torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1)[None]
    resized = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
    return resized[0].permute(1, 2, 0).numpy()


def photo_texture(rng: np.random.Generator, photos: tuple[str, ...], size: int) -> np.ndarray:
    """A (size, size, 3) float texture: a random square crop (20-100% of the shorter side) of one photograph,
    maybe mirrored, recoloured (channel mix, gain, tint for gray photographs) and shaded by a gradient."""
    photo = load_photo(photos[rng.integers(len(photos))])
    height, width = photo.shape[:2]
    side = max(8, int(rng.uniform(0.2, 1.0) * min(height, width)))
    top, left = int(rng.integers(height - side + 1)), int(rng.integers(width - side + 1))
    patch = _resize_bilinear(photo[top : top + side, left : left + side], size)
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    if float(np.ptp(patch.mean(axis=(0, 1)))) < 0.02 or rng.random() < 0.3:
        # Gray photograph (or a chance for a colour one): tint so colour does not give the layer away.
        tint = 0.35 + 0.65 * rng.random(3).astype(np.float32)
        patch = patch.mean(axis=2, keepdims=True) * tint
    else:
        mix = np.eye(3, dtype=np.float32)[rng.permutation(3)]
        patch = patch @ mix
    gain, offset = rng.uniform(0.6, 1.3), rng.uniform(-0.15, 0.15)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, 2 * np.pi)
    shade = 1 + rng.uniform(0, 0.4) * (np.cos(angle) * (xs - 0.5) + np.sin(angle) * (ys - 0.5))
    return np.clip(patch * gain * shade[..., None] + offset, 0, 1)


def _holed(rng: np.random.Generator, grid: Grid, size: int) -> np.ndarray:
    """A blob or ellipse with one to three holes cut out of it."""
    shape = (_blob if rng.random() < 0.5 else _ellipse)(rng, grid, size)
    ys, xs = grid
    pixels = np.argwhere(shape)
    if len(pixels) < 20:
        return shape
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = pixels[rng.integers(len(pixels))] + 0.5
        radius = rng.uniform(0.02, 0.06) * size
        shape = shape & (np.hypot(ys - cy, xs - cx) > radius)
    return shape


def _noise_region(rng: np.random.Generator, grid: Grid, size: int) -> np.ndarray:
    """An irregular region: smooth noise above a threshold inside a random disc (ragged edges, holes, parts)."""
    ys, xs = grid
    cy, cx = rng.uniform(0.2, 0.8, 2) * size
    radius = rng.uniform(0.12, 0.3) * size
    field = _smooth_noise(rng, size, int(rng.integers(5, 12)))
    falloff = 1 - np.hypot(ys - cy, xs - cx) / radius
    return (field * 0.6 + falloff) > 0.6


def _thin_frame(rng: np.random.Generator, grid: Grid, size: int) -> np.ndarray:
    """A rectangle outline a few pixels wide, like a window frame or a sign's border."""
    outer = _rectangle(rng, grid, size)
    width = rng.uniform(1.5, 4.0) * max(size / 128, 1.0)
    # Erode by `width` with shifts in the four directions: what is left is the frame's inside.
    inner = outer.copy()
    for axis in (0, 1):
        for step in (1, -1):
            inner &= np.roll(outer, step * int(np.ceil(width)), axis=axis)
    return outer & ~inner


ShapeFn = Callable[[np.random.Generator, Grid, int], np.ndarray]
_SHAPES: tuple[ShapeFn, ...] = (
    _ellipse, _rectangle, _star_polygon, _ring, _polyline, _blob, _crescent, _holed, _noise_region, _thin_frame,
)


def make_photo_scene(seed: int, *, size: int = 128, split: str = "train", max_objects: int = 6) -> Sample:
    """The scene of `seed` from the photographs of `split`: Sample(image (size, size, 3) uint8,
    masks (M, size, size) bool, M >= 1). The same arguments always give the same scene."""
    if split not in PHOTO_SPLITS:
        raise ValueError(f"unknown photograph split {split!r}; known: {', '.join(PHOTO_SPLITS)}")
    photos = PHOTO_SPLITS[split]
    rng = np.random.default_rng([seed, 7919, list(PHOTO_SPLITS).index(split)])
    grid = _grid(size)
    image = photo_texture(rng, photos, size)
    visible: list[np.ndarray] = []
    for _ in range(int(rng.integers(2, max_objects + 1))):
        shape = _SHAPES[rng.integers(len(_SHAPES))](rng, grid, size)
        if not shape.any():
            continue
        image = np.where(shape[..., None], photo_texture(rng, photos, size), image)
        visible = [mask & ~shape for mask in visible]
        visible.append(shape)
    if not visible:
        # Every shape fell outside the image: one full-size ellipse keeps the scene non-empty.
        shape = _ellipse(rng, grid, size) | (np.hypot(grid[0] - size / 2, grid[1] - size / 2) < size / 6)
        image = np.where(shape[..., None], photo_texture(rng, photos, size), image)
        visible = [shape]
    return layered_sample(f"photos-{split}-{seed:06d}", image, visible)


class PhotoSceneDataset(SeededScenes):
    """`count` photo scenes of one split, scene i made from seed `first_seed + i`."""

    def __init__(self, count: int, *, size: int = 128, split: str = "train", first_seed: int = 0) -> None:
        if split not in PHOTO_SPLITS:
            raise ValueError(f"unknown photograph split {split!r}; known: {', '.join(PHOTO_SPLITS)}")
        super().__init__(partial(make_photo_scene, size=size, split=split), count, first_seed=first_seed,
                         cached=_CACHED_SCENES)
