"""Seeded synthetic scenes with exact instance masks, for training and evaluating small models.

A scene is a textured background with overlapping objects of many shapes, colours and textures,
including thin structures. Later objects occlude earlier ones and each mask is what stays visible,
so masks never overlap. Two families of styles exist: the training styles and a held-out style
(different shapes, textures and palette) for zero-shot tests.
"""

from __future__ import annotations

from functools import lru_cache, partial
from typing import Callable

import numpy as np

from .datasets import Sample

TRAIN_STYLES = ("geometric",)
HELD_OUT_STYLES = ("organic",)
SCENE_STYLES = TRAIN_STYLES + HELD_OUT_STYLES

# A mask must keep this fraction of the image visible to count as an object.
_MIN_AREA_FRACTION = 0.004

Grid = tuple[np.ndarray, np.ndarray]


def _grid(size: int) -> Grid:
    """Pixel-centre coordinates (y, x), each (size, size) float32."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return ys + 0.5, xs + 0.5


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1], (size, size): a random `cells` x `cells` grid upsampled bilinearly."""
    coarse = rng.random((cells + 1, cells + 1)).astype(np.float32)
    position = np.linspace(0, cells, size, dtype=np.float32)
    i = np.minimum(position.astype(np.int64), cells - 1)
    t = position - i
    rows = coarse[i] * (1 - t)[:, None] + coarse[i + 1] * t[:, None]
    return rows[:, i] * (1 - t)[None] + rows[:, i + 1] * t[None]


def _random_colour(rng: np.random.Generator, pastel: bool) -> np.ndarray:
    colour = rng.random(3).astype(np.float32)
    return 0.55 + 0.45 * colour if pastel else colour


def _texture(
    rng: np.random.Generator, grid: Grid, base: np.ndarray, kinds: tuple[str, ...], pastel: bool
) -> np.ndarray:
    """An (H, W, 3) float image in [0, 1]: flat, gradient, stripes, checker, dots or noise around `base`."""
    ys, xs = grid
    size = ys.shape[0]
    kind = kinds[rng.integers(len(kinds))]
    other = _random_colour(rng, pastel)
    if kind == "flat":
        weight = np.zeros_like(ys)
    elif kind == "gradient":
        angle = rng.uniform(0, np.pi)
        ramp = np.cos(angle) * xs + np.sin(angle) * ys
        weight = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    elif kind == "stripes":
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, 14) * size / 128
        weight = (np.sin((np.cos(angle) * xs + np.sin(angle) * ys) * 2 * np.pi / period) > 0).astype(np.float32)
    elif kind == "checker":
        cell = rng.uniform(4, 12) * size / 128
        weight = ((np.floor(xs / cell) + np.floor(ys / cell)) % 2).astype(np.float32)
    elif kind == "dots":
        period = rng.uniform(5, 10) * size / 128
        cy, cx = (ys % period) - period / 2, (xs % period) - period / 2
        weight = (cy**2 + cx**2 < (0.3 * period) ** 2).astype(np.float32)
    else:  # noise
        weight = _smooth_noise(rng, size, int(rng.integers(4, 16)))
    strength = rng.uniform(0.3, 0.8)
    return base[None, None] * (1 - strength * weight[..., None]) + other[None, None] * (strength * weight[..., None])


def _rotated_shape(rng: np.random.Generator, grid: Grid, size: int, extent: tuple[float, float]) -> tuple[np.ndarray, ...]:
    """A random centre, half-axes drawn in `extent` (fractions of `size`) and angle: returns
    (u, v, half_v, half_u): pixel coordinates in the shape's rotated frame and its half-axes."""
    ys, xs = grid
    cy, cx = rng.uniform(0.1, 0.9, 2) * size
    half_v, half_u = rng.uniform(*extent, 2) * size
    angle = rng.uniform(0, np.pi)
    u = (xs - cx) * np.cos(angle) + (ys - cy) * np.sin(angle)
    v = -(xs - cx) * np.sin(angle) + (ys - cy) * np.cos(angle)
    return u, v, half_v, half_u


def _ellipse(rng: np.random.Generator, grid: Grid, size: int) -> np.ndarray:
    u, v, ry, rx = _rotated_shape(rng, grid, size, (0.06, 0.25))
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1


def _rectangle(rng: np.random.Generator, grid: Grid, size: int) -> np.ndarray:
    u, v, hy, hx = _rotated_shape(rng, grid, size, (0.05, 0.22))
    return (np.abs(u) <= hx) & (np.abs(v) <= hy)


def _star_polygon(rng: np.random.Generator, grid: Grid, size: int) -> np.ndarray:
    """A star-shaped polygon: radius varies piecewise linearly with the angle around the centre."""
    ys, xs = grid
    cy, cx = rng.uniform(0.15, 0.85, 2) * size
    corners = int(rng.integers(3, 9))
    radii = rng.uniform(0.06, 0.22, corners) * size
    theta = np.arctan2(ys - cy, xs - cx) % (2 * np.pi)
    edge = np.interp(theta, np.linspace(0, 2 * np.pi, corners + 1), np.append(radii, radii[0]))
    return np.hypot(ys - cy, xs - cx) <= edge


def _ring(rng: np.random.Generator, grid: Grid, size: int) -> np.ndarray:
    ys, xs = grid
    cy, cx = rng.uniform(0.15, 0.85, 2) * size
    outer = rng.uniform(0.08, 0.2) * size
    width = rng.uniform(0.2, 0.5) * outer
    radius = np.hypot(ys - cy, xs - cx)
    return (radius <= outer) & (radius >= outer - width)


def _polyline(rng: np.random.Generator, grid: Grid, size: int) -> np.ndarray:
    """A thin structure: a random polyline 1.5 to 3.5 px wide (at 128 px), like wires or branches."""
    ys, xs = grid
    vertices = rng.uniform(0.05, 0.95, (int(rng.integers(2, 5)), 2)) * size
    half_width = rng.uniform(0.75, 1.75) * max(size / 128, 1.0)
    distance = np.full(ys.shape, np.inf, dtype=np.float32)
    for (ay, ax), (by, bx) in zip(vertices[:-1], vertices[1:]):
        dy, dx = by - ay, bx - ax
        t = np.clip(((ys - ay) * dy + (xs - ax) * dx) / max(dy * dy + dx * dx, 1e-6), 0, 1)
        distance = np.minimum(distance, np.hypot(ys - ay - t * dy, xs - ax - t * dx))
    return distance <= half_width


def _blob(rng: np.random.Generator, grid: Grid, size: int) -> np.ndarray:
    """A smooth organic blob: a disc whose radius is modulated by a few random harmonics."""
    ys, xs = grid
    cy, cx = rng.uniform(0.15, 0.85, 2) * size
    radius = rng.uniform(0.08, 0.2) * size
    theta = np.arctan2(ys - cy, xs - cx)
    wobble = sum(
        rng.uniform(0.05, 0.25) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in range(2, 5)
    )
    return np.hypot(ys - cy, xs - cx) <= radius * (1 + wobble)


def _crescent(rng: np.random.Generator, grid: Grid, size: int) -> np.ndarray:
    ys, xs = grid
    cy, cx = rng.uniform(0.15, 0.85, 2) * size
    radius = rng.uniform(0.08, 0.2) * size
    angle = rng.uniform(0, 2 * np.pi)
    shift = rng.uniform(0.3, 0.6) * radius
    inside = np.hypot(ys - cy, xs - cx) <= radius
    bite = np.hypot(ys - cy - shift * np.sin(angle), xs - cx - shift * np.cos(angle)) <= radius * 0.85
    return inside & ~bite


ShapeFn = Callable[[np.random.Generator, Grid, int], np.ndarray]

_STYLES: dict[str, dict] = {
    "geometric": {
        "shapes": (_ellipse, _rectangle, _star_polygon, _ring, _polyline),
        "textures": ("flat", "gradient", "stripes", "checker", "noise"),
        "background": ("gradient", "stripes", "checker", "noise"),
        "pastel": False,
    },
    # Held out: shapes, textures and palette that the training style never shows.
    "organic": {
        "shapes": (_blob, _crescent, _polyline),
        "textures": ("flat", "dots", "noise"),
        "background": ("dots", "noise"),
        "pastel": True,
    },
}


def make_scene(seed: int, *, size: int = 128, style: str = "geometric", max_objects: int = 6) -> Sample:
    """The scene of `seed`: Sample(image (size, size, 3) uint8, masks (M, size, size) bool, M >= 1).

    The same (seed, size, style, max_objects) always gives the same scene.
    """
    if style not in _STYLES:
        raise ValueError(f"unknown scene style {style!r}; known: {', '.join(SCENE_STYLES)}")
    recipe = _STYLES[style]
    rng = np.random.default_rng([seed, SCENE_STYLES.index(style)])
    grid = _grid(size)
    pastel = recipe["pastel"]
    image = _texture(rng, grid, _random_colour(rng, pastel) * 0.8, recipe["background"], pastel)
    shapes: tuple[ShapeFn, ...] = recipe["shapes"]
    visible: list[np.ndarray] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        shape = shapes[rng.integers(len(shapes))](rng, grid, size)
        fill = _texture(rng, grid, _random_colour(rng, pastel), recipe["textures"], pastel)
        image = np.where(shape[..., None], fill, image)
        visible = [mask & ~shape for mask in visible]
        visible.append(shape)
    return layered_sample(f"{style}-{seed:06d}", image, visible)


def layered_sample(name: str, image: np.ndarray, visible: list[np.ndarray]) -> Sample:
    """The Sample of a scene painted in layers: image (S, S, 3) float in [0, 1], visible (S, S) bool per layer.

    Layers that keep too little of themselves visible are no objects; when none is, the largest visible one is."""
    size = image.shape[0]
    min_area = _MIN_AREA_FRACTION * size * size
    masks = [mask for mask in visible if mask.sum() >= min_area]
    if not masks:
        masks = [max(visible, key=lambda mask: mask.sum())]
    pixels = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    return Sample(name=name, image=pixels, masks=np.stack(masks))


class SeededScenes:
    """`count` scenes, scene i made by `make(first_seed + i)`; items are Samples.

    Up to `cached` made scenes are kept, so epochs after the first cost no scene making."""

    def __init__(self, make: Callable[[int], Sample], count: int, *, first_seed: int = 0, cached: int = 0) -> None:
        self.count = count
        self.first_seed = first_seed
        self._scene = lru_cache(maxsize=cached)(make) if cached else make

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.count:
            raise IndexError(index)
        return self._scene(self.first_seed + index)


class SceneDataset(SeededScenes):
    """`count` synthetic scenes of one style, scene i made from seed `first_seed + i`."""

    def __init__(self, count: int, *, size: int = 128, style: str = "geometric", first_seed: int = 0) -> None:
        if style not in _STYLES:
            raise ValueError(f"unknown scene style {style!r}; known: {', '.join(SCENE_STYLES)}")
        super().__init__(partial(make_scene, size=size, style=style), count, first_seed=first_seed)
