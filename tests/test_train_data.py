"""Training data: every --data form, offline pairs, and batches that depend only on (seed, epoch, index)."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from core.errors import InputError
from core.io import write_image
from core.data.scenes import make_scene
from train.data import OfflinePairs, make_batch, open_dataset

CPU = torch.device("cpu")


@pytest.fixture()
def robust_seg(tmp_path):
    """A two-image Robust-Seg layout with a clear folder, masks and one (inverted) 'degradation'."""
    for name in ("clear", "masks", "fog"):
        (tmp_path / "train" / name).mkdir(parents=True)
    for seed in range(2):
        scene = make_scene(seed, size=48)
        write_image(tmp_path / "train" / "clear" / f"s{seed}.png", scene.image)
        write_image(tmp_path / "train" / "fog" / f"s{seed}.png", 255 - scene.image)
        np.save(tmp_path / "train" / "masks" / f"s{seed}.npy", scene.masks)
    return tmp_path


def batch(samples, indices, **overrides):
    settings = dict(epoch=0, seed=0, size=32, prompt="points", num_points=3, degrade_online=True, level=3, device=CPU)
    return make_batch(samples, indices, **{**settings, **overrides})


def test_every_data_form_opens(robust_seg, tmp_path):
    assert len(open_dataset("synthetic:3:organic", split="train", image_dir=None, size=32)) == 3
    assert len(open_dataset(str(robust_seg), split="train", image_dir=None, size=32)) == 2

    folder = tmp_path / "folder"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    scene = make_scene(5, size=40)
    write_image(folder / "images" / "a.png", scene.image)
    iio.imwrite(folder / "masks" / "a.png", scene.masks[0].astype(np.uint8) * 255)
    assert open_dataset(str(folder), split="train", image_dir=None, size=32)[0].masks.shape == (1, 40, 40)

    coco = {"images": [{"id": 1, "file_name": "a.png", "height": 40, "width": 40}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 16.0, "bbox": [4, 4, 4, 4],
                             "segmentation": [[4, 4, 8, 4, 8, 8, 4, 8]]}],
            "categories": [{"id": 1, "name": "thing"}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    sample = open_dataset(str(tmp_path / "coco.json"), split="train", image_dir=str(folder / "images"), size=32)[0]
    assert sample.masks.shape == (1, 40, 40) and sample.masks.sum() > 10

    with pytest.raises(InputError, match="needs --image-dir"):
        open_dataset(str(tmp_path / "coco.json"), split="train", image_dir=None, size=32)
    with pytest.raises(InputError, match="not a dataset"):
        open_dataset(str(folder / "images"), split="train", image_dir=None, size=32)


def test_offline_pairs_give_degraded_image_with_its_clear_one(robust_seg):
    pairs = OfflinePairs(str(robust_seg), "train")
    assert pairs.kinds == ["clear", "fog"] and len(pairs) == 4
    made = batch([pairs[1]], [1], degrade_online=False)
    assert torch.allclose(made.degraded, 1 - made.clear, atol=2 / 255)


def test_batches_depend_only_on_seed_epoch_and_index():
    samples = [make_scene(seed, size=32) for seed in range(4)]
    alone = batch([samples[2]], [2])
    together = batch(samples, [0, 1, 2, 3])
    assert torch.equal(alone.degraded[0], together.degraded[2]) and torch.equal(alone.points[0], together.points[2])
    assert alone.kinds[0] == together.kinds[2]
    other_epoch = batch(samples, [0, 1, 2, 3], epoch=1)
    assert not torch.equal(other_epoch.points, together.points)

    mask = together.masks[2].bool()
    for x, y in together.points[2].long():
        assert mask[y, x], "points lie inside the largest mask"
    boxes = batch(samples, [0, 1, 2, 3], prompt="box")
    assert boxes.points is None and boxes.boxes.shape == (4, 4)
    rows, cols = torch.nonzero(boxes.masks[1], as_tuple=True)
    assert boxes.boxes[1].tolist() == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]


def test_several_masks_per_image_add_prompts_after_the_published_one():
    samples = [make_scene(seed, size=32) for seed in range(6)]
    one = batch(samples, list(range(6)))
    several = batch(samples, list(range(6)), masks_per_image=3)
    index = several.image_index.tolist()
    assert one.image_index.tolist() == list(range(6)) and index == sorted(index)
    assert [index.count(i) for i in range(6)] == [min(3, len(s.masks)) for s in samples] and len(set(index)) == 6
    first = [index.index(i) for i in range(6)]
    # One mask per image is exactly the published batch; more masks leave it and the images as they were.
    assert torch.equal(several.masks[first], one.masks) and torch.equal(several.points[first], one.points)
    assert torch.equal(several.degraded, one.degraded) and several.kinds == one.kinds
    for k, image in enumerate(index):
        mask = several.masks[k].bool()
        assert all(mask[y, x] for x, y in several.points[k].long()), "points lie inside their own mask"
    for image in range(6):
        rows = [several.masks[k] for k in range(len(index)) if index[k] == image]
        assert len({tuple(m.flatten().tolist()) for m in rows}) == len(rows), "an image's masks are distinct"


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("stage", ["base", "robust"])
def test_shared_encoding_equals_one_image_per_prompt(micro_model, stage):
    """Prompts indexed onto their image's single encoding give the losses of repeating each image."""
    from train.config import TrainConfig
    from train.step import TrainStep

    samples = [make_scene(seed, size=128) for seed in (1, 2)]
    made = batch(samples, [0, 1], size=128, prompt="box", masks_per_image=3)
    step = TrainStep(micro_model, stage, "paper", TrainConfig(data="", output="").resolved_weights())
    with torch.no_grad():
        shared = step(made.clear, made.degraded, made.masks, None, made.boxes, made.image_index)
        repeated = step(made.clear[made.image_index], made.degraded[made.image_index], made.masks, None, made.boxes)
    assert len(made.masks) > 2 and shared.keys() == repeated.keys()
    for key in shared:
        assert torch.allclose(shared[key], repeated[key], rtol=1e-4, atol=1e-6), key
