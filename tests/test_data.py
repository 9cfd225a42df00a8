"""Dataset readers and split resolution on small layouts written in tmp_path."""

import json

import imageio.v3 as iio
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from core.data.datasets import (
    CocoInstancesDataset,
    ManifestDataset,
    MaskFolderDataset,
    RobustSegSplit,
    Sample,
    read_mask_array,
    read_mask_image,
    split_datasets,
)
from core.errors import InputError


def _image(value, height=24, width=32):
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = value
    image[..., 1] = np.arange(width, dtype=np.uint8)[None]
    return image


def _write_robustseg(root, split="test", names=("b", "a"), degradations=("fog",)):
    folder = root / split
    for sub in ("clear", "masks", *degradations):
        (folder / sub).mkdir(parents=True)
    for index, name in enumerate(names):
        masks = np.zeros((2, 24, 32), bool)
        masks[0, : 4 + index] = True
        masks[1, :, : 2 + index] = True
        iio.imwrite(folder / "clear" / f"{name}.png", _image(10 * index))
        np.save(folder / "masks" / f"{name}.npy", masks)
        for degradation in degradations:
            iio.imwrite(folder / degradation / f"{name}.png", _image(10 * index + 100))
    return folder


def test_robustseg_pairs_by_sorted_name(tmp_path):
    _write_robustseg(tmp_path, degradations=("fog", "snow"))
    assert RobustSegSplit.degradations(tmp_path, "test") == ["fog", "snow"]
    split = RobustSegSplit(tmp_path, "test", "fog")
    assert len(split) == 2
    first = split[0]  # "a", written second (index 1)
    assert isinstance(first, Sample) and first.name == "a"
    assert first.image[0, 0, 0] == 110 and first.clear[0, 0, 0] == 10
    assert first.masks.dtype == bool and first.masks.shape == (2, 24, 32)
    assert first.masks[0].sum() == 5 * 32 and first.masks[1].sum() == 3 * 24
    assert split[-1].name == "b"
    with pytest.raises(IndexError):
        split[2]
    clear = RobustSegSplit(tmp_path, "test")
    assert clear[1].clear is None and clear[1].image[0, 0, 0] == 0
    assert [sample.name for sample in clear] == ["a", "b"]


def test_robustseg_rejects_mispaired_and_missing_files(tmp_path):
    folder = _write_robustseg(tmp_path)
    (folder / "fog" / "a.png").rename(folder / "fog" / "c.png")
    with pytest.raises(InputError, match="names differ"):
        RobustSegSplit(tmp_path, "test", "fog")
    (folder / "masks" / "b.npy").unlink()
    with pytest.raises(InputError, match="1 files for 2 clear images"):
        RobustSegSplit(tmp_path, "test")
    with pytest.raises(InputError, match="no such degradation folder"):
        RobustSegSplit(tmp_path, "test", "rain")
    with pytest.raises(InputError, match="no such Robust-Seg split folder"):
        RobustSegSplit(tmp_path, "val")


def test_robustseg_rejects_masks_of_another_size(tmp_path):
    folder = _write_robustseg(tmp_path)
    np.save(folder / "masks" / "a.npy", np.zeros((1, 10, 12), bool))
    with pytest.raises(InputError, match="a.npy: masks are 12x10, the image is 32x24"):  # width x height
        RobustSegSplit(tmp_path, "test")[0]
    iio.imwrite(folder / "fog" / "b.png", _image(0, height=20))
    with pytest.raises(InputError, match=r"b.png: 32x20 differs from the clear image's 32x24$"):
        RobustSegSplit(tmp_path, "test", "fog")[1]


def test_mask_arrays_stacked_or_as_label_maps(tmp_path):
    labels = np.zeros((6, 8), np.int32)
    labels[0, :3], labels[5, :2] = 9, 4
    np.save(tmp_path / "labels.npy", labels)
    assert read_mask_array(tmp_path / "labels.npy").sum(axis=(1, 2)).tolist() == [2, 3]  # labels 4, 9
    np.save(tmp_path / "binary.npy", labels > 0)
    assert read_mask_array(tmp_path / "binary.npy").shape == (1, 6, 8)
    stacked = np.zeros((2, 6, 8), np.uint8)
    stacked[1, 2] = 5
    np.save(tmp_path / "stacked.npy", stacked)
    assert read_mask_array(tmp_path / "stacked.npy").sum(axis=(1, 2)).tolist() == [0, 8]
    for bad, message in ((np.zeros((2, 2, 2, 2)), "must be a numeric"), (None, "no such mask file")):
        path = tmp_path / "bad.npy"
        if bad is not None:
            np.save(path, bad)
        else:
            path = tmp_path / "missing.npy"
        with pytest.raises(InputError, match=message):
            read_mask_array(path)


def test_mask_png_binary_and_label_maps(tmp_path):
    binary = np.zeros((6, 8), np.uint8)
    binary[1:3, 2:5] = 255
    iio.imwrite(tmp_path / "binary.png", binary)
    masks = read_mask_image(tmp_path / "binary.png")
    assert masks.shape == (1, 6, 8) and masks.sum() == 6
    labels = np.zeros((6, 8), np.uint8)
    labels[0, :3], labels[5, :2], labels[3, 4] = 7, 2, 200
    iio.imwrite(tmp_path / "labels.png", labels)
    masks = read_mask_image(tmp_path / "labels.png")
    assert masks.shape == (3, 6, 8) and masks.sum(axis=(1, 2)).tolist() == [2, 3, 1]  # labels 2, 7, 200
    colours = np.zeros((6, 8, 3), np.uint8)
    colours[0, :3] = (255, 0, 0)
    colours[1, :4] = (0, 0, 255)
    colours[2, :5] = (255, 0, 255)
    iio.imwrite(tmp_path / "colours.png", colours)
    assert read_mask_image(tmp_path / "colours.png").sum(axis=(1, 2)).tolist() == [4, 3, 5]


def test_mask_folder_dataset(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for index, name in enumerate(["y", "x"]):
        iio.imwrite(tmp_path / "images" / f"{name}.jpg", _image(0))
        mask = np.zeros((24, 32), np.uint8)
        mask[: index + 1] = 255
        iio.imwrite(tmp_path / "masks" / f"{name}.png", mask)
    dataset = MaskFolderDataset(tmp_path / "images", tmp_path / "masks")
    assert len(dataset) == 2
    sample = dataset[0]
    assert sample.name == "x" and sample.masks.shape == (1, 24, 32) and sample.masks.sum() == 2 * 32
    (tmp_path / "masks" / "y.png").unlink()
    with pytest.raises(InputError, match="y.jpg: no mask named y"):
        MaskFolderDataset(tmp_path / "images", tmp_path / "masks")


def test_coco_instances_dataset(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("one.png", "two.png", "empty.png"):
        iio.imwrite(tmp_path / "images" / name, _image(0))
    rle_mask = np.zeros((24, 32), np.uint8, order="F")
    rle_mask[10:20, 5:9] = 1
    rle = mask_utils.encode(rle_mask)
    rle["counts"] = rle["counts"].decode()
    annotations = {
        "images": [
            {"id": 1, "file_name": "two.png", "height": 24, "width": 32},
            {"id": 2, "file_name": "one.png", "height": 24, "width": 32},
            {"id": 3, "file_name": "empty.png", "height": 24, "width": 32},
        ],
        "annotations": [
            # A polygon covering columns 0..10 of rows 0..10.
            {"id": 1, "image_id": 2, "category_id": 5, "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]], "area": 100, "bbox": [0, 0, 10, 10], "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 9, "segmentation": rle, "area": 40, "bbox": [5, 10, 4, 10], "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 9, "segmentation": rle, "area": 40, "bbox": [5, 10, 4, 10], "iscrowd": 1},
            {"id": 4, "image_id": 1, "category_id": 5, "segmentation": rle, "area": 40, "bbox": [5, 10, 4, 10], "iscrowd": 0},
        ],
        "categories": [{"id": 5, "name": "a"}, {"id": 9, "name": "b"}],
    }
    (tmp_path / "instances.json").write_text(json.dumps(annotations))
    dataset = CocoInstancesDataset(tmp_path / "images", tmp_path / "instances.json")
    assert len(dataset) == 2  # the image without annotations is left out
    sample = dataset[0]
    assert sample.name == "one" and sample.masks.shape == (2, 24, 32)  # the crowd annotation is left out
    assert dataset.categories(0) == [5, 9]
    np.testing.assert_array_equal(sample.masks[1], rle_mask.astype(bool))
    assert sample.masks[0][:10, :10].all() and not sample.masks[0][12:].any()
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="bad.json"):
        CocoInstancesDataset(tmp_path / "images", tmp_path / "bad.json")


def test_manifest_dataset(tmp_path):
    iio.imwrite(tmp_path / "night.png", _image(1))
    iio.imwrite(tmp_path / "day.png", _image(2))
    np.save(tmp_path / "m.npy", np.ones((24, 32), bool))
    entries = [
        {"image": "night.png", "masks": "m.npy", "condition": "night", "clear": "day.png"},
        {"image": "day.png", "masks": "m.npy"},
    ]
    (tmp_path / "manifest.json").write_text(json.dumps(entries))
    assert ManifestDataset.conditions(tmp_path / "manifest.json") == ["night", "real"]
    night = ManifestDataset(tmp_path / "manifest.json", "night")
    assert len(night) == 1
    sample = night[0]
    assert sample.name == "night" and sample.image[0, 0, 0] == 1 and sample.clear[0, 0, 0] == 2
    assert sample.masks.shape == (1, 24, 32)
    (tmp_path / "manifest.json").write_text(json.dumps([{"image": "night.png"}]))
    with pytest.raises(InputError, match="entry 0 needs string fields"):
        ManifestDataset(tmp_path / "manifest.json")


def test_split_datasets_defaults_config_and_custom(tmp_path):
    _write_robustseg(tmp_path, "MSRA10K", degradations=("fog", "snow"))
    seen = split_datasets("seen", tmp_path)
    assert [d.name for d in seen] == ["MSRA10K", "LVIS"]
    assert seen[0].missing() is None and seen[0].conditions() == ["clear", "fog", "snow"]
    assert "lvis not found" in seen[1].missing()
    assert len(seen[0].reader("snow")) == 2

    config = tmp_path / "locations.json"
    config.write_text(json.dumps({"LVIS": {"format": "robustseg", "path": "MSRA10K"}}))
    assert split_datasets("seen", tmp_path, config)[1].missing() is None
    config.write_text(json.dumps({"LVIS": {"format": "folder", "images": "x"}}))
    with pytest.raises(InputError, match="LVIS \\(folder\\) needs string fields images, masks"):
        split_datasets("seen", tmp_path, config)

    custom = split_datasets("custom", tmp_path / "MSRA10K")
    assert [(d.name, d.format) for d in custom] == [("MSRA10K", "robustseg")]
    assert [d.name for d in split_datasets("zeroshot", tmp_path)] == ["NDD20", "STREETS", "FSS-1000", "COCO"]


def test_dataset_spec_formats(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "pngs").mkdir()
    iio.imwrite(tmp_path / "imgs" / "p.png", _image(0))
    iio.imwrite(tmp_path / "pngs" / "p.png", np.full((24, 32), 255, np.uint8))
    np.save(tmp_path / "m.npy", np.ones((24, 32), bool))
    entries = [{"image": "imgs/p.png", "masks": "m.npy", "condition": "clear"}, {"image": "imgs/p.png", "masks": "m.npy", "condition": "night"}]
    (tmp_path / "real.json").write_text(json.dumps(entries))
    config = tmp_path / "locations.json"
    config.write_text(
        json.dumps(
            {
                "NDD20": {"format": "folder", "images": "imgs", "masks": "pngs"},
                "STREETS": {"format": "manifest", "path": "real.json"},
                "FSS-1000": {"format": "coco", "images": "imgs", "annotations": "none.json"},
                "COCO": {"format": "manifest", "path": "imgs"},  # a folder where a file is expected
            }
        )
    )
    ndd20, streets, fss, coco = split_datasets("zeroshot", tmp_path, config)
    assert ndd20.missing() is None and ndd20.conditions() == ["clear"] and ndd20.reader("clear")[0].masks.sum() == 24 * 32
    assert streets.missing() is None and streets.conditions() == ["clear", "night"]
    assert len(streets.reader("night")) == 1
    assert "none.json not found" in fss.missing() and "imgs not found" in coco.missing()
