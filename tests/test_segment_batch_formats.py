"""`segment --image-batch N` writes the same bytes for every N in every format; the outline formats
(polygons, geojson, yolo) load in their consumers' readers and give the masks back."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import yaml
from click.testing import CliRunner, Result
from pycocotools.coco import COCO
from shapely.geometry import shape
from skimage.draw import polygon2mask

from robustsam_cli.main import cli

pytestmark = pytest.mark.usefixtures("one_thread")

# Five images (sizes differ: each is resized and padded on its own), so --image-batch 4 makes a
# group of 4 and one of 1.
SIZES = {"a.png": (60, 80), "b.png": (48, 64), "c.png": (90, 70), "d.png": (64, 64), "e.png": (50, 100)}
FORMATS = ("png", "coco", "label", "polygons", "geojson", "yolo")


def _prompts() -> dict[str, list[dict]]:
    prompts = {}
    for name, (height, width) in SIZES.items():
        prompts[name] = [
            {"box": [width * 0.15, height * 0.15, width * 0.85, height * 0.85]},
            {"points": [[width * 0.5, height * 0.5]], "labels": [1]},
        ]
    return prompts


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("batch_inputs")
    rng = np.random.default_rng(0)
    folder = root / "imgs"
    folder.mkdir()
    for index, (name, (height, width)) in enumerate(SIZES.items()):
        yy, xx = np.mgrid[:height, :width]
        radius = np.hypot(yy - height / 2, xx - width / 2)
        image = rng.integers(0, 70, (height, width, 3), dtype=np.uint8)
        ring = (radius < min(height, width) * 0.4) & (radius > min(height, width) * (0.1 + 0.03 * index))
        image[ring] = (220, 200 - 20 * index, 90)
        iio.imwrite(folder / name, image)
    prompts = root / "prompts.json"
    prompts.write_text(json.dumps(_prompts()), encoding="utf-8")
    return folder, prompts


def _run(*args: str) -> Result:
    result = CliRunner().invoke(cli, ["segment", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _files(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def outputs(inputs, tmp_path_factory) -> dict[tuple[str, int], Path]:
    """Every format written with --image-batch 1 and 4 (all three masks per prompt: more to compare)."""
    folder, prompts = inputs
    root = tmp_path_factory.mktemp("batch_outputs")
    written = {}
    for output_format in FORMATS:
        for image_batch in (1, 4):
            out = root / f"{output_format}_{image_batch}"
            _run(str(folder), "--prompts", str(prompts), "-o", str(out), "--format", output_format,
                 "--multimask", "--all-masks", "--image-batch", str(image_batch))
            written[output_format, image_batch] = out
    return written


@pytest.mark.parametrize("output_format", FORMATS)
def test_outputs_are_byte_identical_for_every_image_batch(outputs, output_format: str) -> None:
    one, four = _files(outputs[output_format, 1]), _files(outputs[output_format, 4])
    assert one and one == four


def test_segment_everything_is_byte_identical_for_every_image_batch(inputs, tmp_path: Path) -> None:
    folder, _ = inputs
    files = []
    for image_batch in (1, 3):
        out = tmp_path / str(image_batch)
        _run(str(folder), "-o", str(out), "--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0",
             "--image-batch", str(image_batch))
        files.append(_files(out))
    assert len(files[0]) > len(SIZES) and files[0] == files[1]


def _png_masks(outputs) -> dict[str, list[np.ndarray]]:
    """The masks of each image (by file name) as the png format wrote them."""
    out = outputs["png", 1]
    masks = {}
    for name in SIZES:
        folder = out / Path(name).stem
        count = len(list(folder.glob("*.png")))
        masks[name] = [iio.imread(folder / f"{k}.png") == 255 for k in range(count)]
    return masks


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


def test_coco_polygons_load_in_pycocotools(outputs) -> None:
    masks = _png_masks(outputs)
    coco = COCO(str(outputs["polygons", 1] / "instances_polygons.json"))
    images = {image["file_name"]: image for image in coco.dataset["images"]}
    assert set(images) == set(SIZES)
    assert coco.dataset["categories"] == [{"id": 1, "name": "object"}]
    compared = 0
    for name, image_masks in masks.items():
        image = images[name]
        assert (image["height"], image["width"]) == SIZES[name]
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        assert [a["mask_index"] for a in annotations] == [k for k, mask in enumerate(image_masks) if mask.any()]
        for annotation in annotations:
            mask = image_masks[annotation["mask_index"]]
            assert _iou(coco.annToMask(annotation).astype(bool), mask) >= 0.98
            assert annotation["area"] == mask.sum() and annotation["category_id"] == 1
            compared += 1
    assert compared >= len(SIZES)


def _rasterise(geometry, height: int, width: int) -> np.ndarray:
    """A shapely (Multi)Polygon in pixel-edge coordinates -> the mask of the pixels whose centres it covers."""
    mask = np.zeros((height, width), dtype=bool)
    for polygon in getattr(geometry, "geoms", [geometry]):
        rings = [np.asarray(polygon.exterior.coords)] + [np.asarray(ring.coords) for ring in polygon.interiors]
        # polygon2mask takes (row, column) vertices with pixel centres at integers
        filled = [polygon2mask((height, width), ring[:, ::-1] - 0.5) for ring in rings]
        mask |= filled[0] & ~np.any(filled[1:], axis=0) if len(filled) > 1 else filled[0]
    return mask


def test_geojson_is_valid_and_gives_the_masks_back(outputs) -> None:
    masks = _png_masks(outputs)
    for name, image_masks in masks.items():
        collection = json.loads((outputs["geojson", 1] / f"{Path(name).stem}.geojson").read_text())
        assert collection["type"] == "FeatureCollection" and collection["image"] == name
        assert (collection["height"], collection["width"]) == SIZES[name]
        for feature in collection["features"]:
            assert feature["type"] == "Feature" and feature["geometry"]["type"] == "MultiPolygon"
            properties = feature["properties"]
            assert set(properties) == {"mask_index", "prompt_index", "predicted_iou", "stability_score", "area", "bbox", "category_id"}
            assert properties["prompt_index"] == properties["mask_index"] // 3
            geometry = shape(feature["geometry"])
            assert geometry.is_valid
            for polygon in geometry.geoms:
                assert polygon.exterior.is_ccw and not any(ring.is_ccw for ring in polygon.interiors)
            mask = image_masks[properties["mask_index"]]
            assert properties["area"] == mask.sum()
            assert _iou(_rasterise(geometry, *SIZES[name]), mask) >= 0.98


def test_yolo_lines_parse_back_to_the_masks(outputs) -> None:
    masks = _png_masks(outputs)
    out = outputs["yolo", 1]
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["names"] == {0: "object"}
    for name, image_masks in masks.items():
        height, width = SIZES[name]
        lines = (out / "labels" / f"{Path(name).stem}.txt").read_text().splitlines()
        assert len(lines) == sum(mask.any() for mask in image_masks)
        nonempty = [k for k, mask in enumerate(image_masks) if mask.any()]
        for k, line in zip(nonempty, lines):
            values = line.split()
            assert values[0] == "0" and len(values) % 2 == 1
            points = np.array([float(value) for value in values[1:]]).reshape(-1, 2)
            assert points.min() >= 0 and points.max() <= 1
            # One polygon per mask, its parts and holes joined by zero-width bridges: an even-odd fill.
            pixels = points * [width, height]
            assert _iou(polygon2mask((height, width), pixels[:, ::-1] - 0.5), image_masks[k]) >= 0.98


@pytest.mark.parametrize(("args", "named"), [
    (["--image-batch", "0"], "--image-batch"),
    (["--image-batch", "-2"], "--image-batch"),
    (["--image-batch", "many"], "--image-batch"),
    (["--format", "shapefile"], "--format"),
    (["--polygon-tolerance", "-1", "--format", "geojson"], "--polygon-tolerance"),
])
def test_bad_batch_and_format_options_are_one_line_and_exit_2(inputs, tmp_path: Path, args: list[str], named: str) -> None:
    folder, prompts = inputs
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["segment", str(folder), "--prompts", str(prompts), "-o", str(out), *args])
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2 and len(errors) == 1 and named in errors[0], result.output
    assert not out.exists()
