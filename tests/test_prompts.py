"""Prompt files: the tool's JSON and COCO instances, and the messages for bad ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from core.errors import InputError
from core.data.prompt_files import Prompt, interior_point, load_prompts


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_tool_json_reads_boxes_points_and_both(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "prompts.json",
        {
            "a.jpg": [{"box": [1, 2, 30, 40]}, {"points": [[5, 6], [7.5, 8]], "labels": [1, 0]}],
            "sub\\b.png": [{"box": [0, 0, 10, 10], "points": [[3, 3]], "labels": [1]}],
            "c.png": [],
        },
    )
    prompts = load_prompts(path)
    assert list(prompts.prompts) == ["a.jpg", "sub/b.png", "c.png"]
    box, points = prompts.prompts["a.jpg"]
    assert box.box == (1.0, 2.0, 30.0, 40.0) and box.points == () and box.signature == (True, 0)
    assert points.box is None and points.points == ((5.0, 6.0), (7.5, 8.0)) and points.labels == (1, 0)
    assert points.signature == (False, 2)
    both = prompts.prompts["sub/b.png"][0]
    assert both.signature == (True, 1) and both.where == f"{path}: image 'sub\\b.png', prompt 0"
    assert prompts.prompts["c.png"] == [] and prompts.image_ids == {}


@pytest.mark.parametrize(
    "data, expected",
    [
        ([{"box": [0, 0, 1, 1]}], "expected an object mapping image paths"),
        ({"a.jpg": {"box": [0, 0, 1, 1]}}, "image 'a.jpg': expected a list of prompts"),
        ({"a.jpg": [{"box": [0, 0, 1]}]}, "image 'a.jpg', prompt 0, field 'box': expected [x0, y0, x1, y1]"),
        ({"a.jpg": [{"box": [0, 0, 1, 1]}, {"box": [5, 0, 1, 1]}]}, "image 'a.jpg', prompt 1, field 'box': [5, 0, 1, 1] needs x0 < x1"),
        ({"a.jpg": [{"box": [0, 0, "1", 1]}]}, "prompt 0, field 'box'"),
        ({"a.jpg": [{"points": [[1, 2]], "labels": [1, 0]}]}, "field 'labels': 2 labels for 1 points"),
        ({"a.jpg": [{"points": [[1, 2]], "labels": [2]}]}, "field 'labels' [0]: expected 0 or 1, got 2"),
        ({"a.jpg": [{"points": [[1, 2, 3]], "labels": [1]}]}, "field 'points' [0]: expected [x, y], got [1, 2, 3]"),
        ({"a.jpg": [{"points": [[1, 2]]}]}, "prompt 0: 'points' and 'labels' go together"),
        ({"a.jpg": [{"bbox": [0, 0, 1, 1]}]}, "prompt 0: unknown field 'bbox'"),
        ({"a.jpg": [{}]}, "prompt 0: needs a 'box' or 'points'"),
        ({"a.jpg": ["box"]}, "prompt 0: expected an object"),
    ],
)
def test_tool_json_errors_name_file_image_and_field(tmp_path: Path, data: object, expected: str) -> None:
    path = write_json(tmp_path / "bad.json", data)
    with pytest.raises(InputError) as error:
        load_prompts(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


def test_malformed_json_and_missing_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"a.jpg": [{"box": [0, 0, 1, 1]}', encoding="utf-8")
    with pytest.raises(InputError, match=r"broken\.json: not valid JSON \(Expecting"):
        load_prompts(path)
    with pytest.raises(InputError, match=r"absent\.json: no such prompt file"):
        load_prompts(tmp_path / "absent.json")


def coco(annotations: list[dict], images: list[dict] | None = None) -> dict:
    images = images or [{"id": 7, "file_name": "x/one.jpg", "height": 40, "width": 60}, {"id": 9, "file_name": "two.jpg", "height": 40, "width": 60}]
    return {"images": images, "annotations": annotations, "categories": [{"id": 3, "name": "thing"}]}


def test_coco_boxes_become_xyxy_prompts_with_ids_and_categories(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "instances.json",
        coco([{"id": 1, "image_id": 7, "bbox": [10, 5, 20, 8], "category_id": 3}, {"id": 2, "image_id": 7, "bbox": [0, 0, 4, 4], "category_id": 5}]),
    )
    prompts = load_prompts(path)
    assert prompts.image_ids == {"x/one.jpg": 7, "two.jpg": 9}
    first, second = prompts.prompts["x/one.jpg"]
    assert first.box == (10.0, 5.0, 30.0, 13.0) and first.category_id == 3
    assert second.box == (0.0, 0.0, 4.0, 4.0) and second.category_id == 5
    assert prompts.prompts["two.jpg"] == []


def test_coco_points_lie_inside_the_mask_even_when_the_box_centre_does_not(tmp_path: Path) -> None:
    # A "U": two 4-px-wide legs joined at the bottom; the box centre (20, 15) is in the gap.
    u_shape = [[10, 5, 14, 5, 14, 21, 26, 21, 26, 5, 30, 5, 30, 25, 10, 25]]
    path = write_json(
        tmp_path / "instances.json",
        coco([{"id": 1, "image_id": 9, "bbox": [10, 5, 20, 20], "segmentation": u_shape}, {"id": 2, "image_id": 9, "bbox": [40, 10, 10, 6]}]),
    )
    u_prompt, box_only = load_prompts(path, prompt_from="point").prompts["two.jpg"]
    assert u_prompt.box is None and u_prompt.labels == (1,)
    x, y = u_prompt.points[0]
    mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(u_shape, 40, 60))).astype(bool)
    assert mask[int(y), int(x)]
    assert box_only.points == ((45.0, 13.0),)


def test_interior_point_is_the_centre_of_a_square_and_deterministic() -> None:
    mask = np.zeros((30, 50), dtype=bool)
    mask[10:21, 30:41] = True
    assert interior_point(mask) == (35.5, 15.5)
    mask[0:3, 0:50] = True  # a thin strip elsewhere does not move the deepest point
    assert interior_point(mask) == (35.5, 15.5)


@pytest.mark.parametrize(
    "annotations, expected",
    [
        ([{"id": 1, "image_id": 8, "bbox": [0, 0, 1, 1]}], "annotations[0], field 'image_id': no image with id 8"),
        ([{"id": 1, "image_id": 7, "bbox": [0, 0, -1, 1]}], "image 'x/one.jpg', annotations[0], field 'bbox'"),
        ([{"id": 1, "image_id": 7, "bbox": [0, 0, 1, 1], "category_id": "cat"}], "annotations[0], field 'category_id'"),
    ],
)
def test_coco_errors_name_image_annotation_and_field(tmp_path: Path, annotations: list[dict], expected: str) -> None:
    path = write_json(tmp_path / "instances.json", coco(annotations))
    with pytest.raises(InputError) as error:
        load_prompts(path)
    assert str(error.value).startswith(f"{path}: ") and expected in str(error.value)


def test_prompt_from_point_is_for_coco_only(tmp_path: Path) -> None:
    path = write_json(tmp_path / "prompts.json", {"a.jpg": [{"box": [0, 0, 1, 1]}]})
    with pytest.raises(InputError, match="--prompt-from applies to COCO"):
        load_prompts(path, prompt_from="point")


def test_prompts_outside_the_image_are_reported() -> None:
    Prompt(box=(0, 0, 64, 48), points=((64, 48),), labels=(1,), where="p.json: image 'a.jpg', prompt 0").check_inside(64, 48)
    with pytest.raises(InputError, match=r"^p\.json: image 'a\.jpg', prompt 3, field 'box': \[0, 0, 65, 48\] is outside the 64x48 image$"):
        Prompt(box=(0, 0, 65, 48), where="p.json: image 'a.jpg', prompt 3").check_inside(64, 48)
    with pytest.raises(InputError, match=r"field 'points' \[1\]: \(5\.0, -1\.0\) is outside"):
        Prompt(points=((1.0, 1.0), (5.0, -1.0)), labels=(1, 0), where="p.json: image 'a.jpg', prompt 0").check_inside(64, 48)
