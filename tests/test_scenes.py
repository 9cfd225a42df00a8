"""Synthetic scenes: seeded, exact disjoint masks that match what is drawn, two distinct style families."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.scenes import HELD_OUT_STYLES, SCENE_STYLES, TRAIN_STYLES, SceneDataset, make_scene


def test_same_seed_same_scene_and_different_seeds_differ():
    first, again, other = make_scene(3), make_scene(3), make_scene(4)
    assert np.array_equal(first.image, again.image) and np.array_equal(first.masks, again.masks)
    assert not np.array_equal(first.image, other.image)


@pytest.mark.parametrize("style", SCENE_STYLES)
def test_masks_are_disjoint_non_empty_and_shaped(style):
    for seed in range(12):
        scene = make_scene(seed, size=96, style=style)
        assert scene.image.shape == (96, 96, 3) and scene.image.dtype == np.uint8
        assert scene.masks.dtype == bool and scene.masks.shape[1:] == (96, 96) and len(scene.masks) >= 1
        assert scene.masks.reshape(len(scene.masks), -1).sum(1).min() > 0
        assert scene.masks.sum(0).max() <= 1, "visible masks must not overlap"


@pytest.mark.parametrize("style", SCENE_STYLES)
def test_masks_follow_the_drawn_pixels(style):
    """Each mask covers one object: its pixels differ from the surroundings just outside it."""
    checked = total = 0
    for seed in range(6):
        scene = make_scene(seed, size=128, style=style)
        image = scene.image.astype(np.float32)
        total += len(scene.masks)
        for mask in scene.masks:
            ring = np.zeros_like(mask)
            ring[1:-1, 1:-1] = (
                mask[:-2, 1:-1] | mask[2:, 1:-1] | mask[1:-1, :-2] | mask[1:-1, 2:]
            ) & ~mask[1:-1, 1:-1]
            if ring.sum() < 20:  # a sliver's few neighbours say little
                continue
            assert np.abs(image[mask].mean(0) - image[ring].mean(0)).max() > 1.0
            checked += 1
    # Slivers are rare: most masks, and several per style, must have been compared.
    assert checked >= max(5, total * 3 // 4)


def test_styles_are_separate_families():
    assert set(TRAIN_STYLES).isdisjoint(HELD_OUT_STYLES)
    geometric = np.stack([make_scene(s, size=64, style="geometric").image for s in range(20)]).astype(float)
    organic = np.stack([make_scene(s, size=64, style="organic").image for s in range(20)]).astype(float)
    # The held-out palette is pastel: clearly brighter on average.
    assert organic.mean() > geometric.mean() + 20


def test_scene_dataset_indexes_seeds():
    dataset = SceneDataset(5, size=64, first_seed=100)
    assert len(dataset) == 5
    assert np.array_equal(dataset[2].image, make_scene(102, size=64).image)
    assert dataset[2].name == "geometric-000102"
    with pytest.raises(IndexError):
        dataset[5]
    with pytest.raises(ValueError, match="unknown scene style"):
        SceneDataset(2, style="cubist")
