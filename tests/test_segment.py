"""`robustsam segment` and core.inference.segment on a small synthetic checkpoint: formats, resume, bad input."""

from __future__ import annotations

import csv
import json
import re
import threading
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from pycocotools import mask as mask_utils

import core.inference.mask_writers
from core import RobustPredictor, build_robustsam
from core.io import read_image, write_mask
from core.errors import InputError
from core.inference import RobustAutomaticMaskGenerator
from core.inference.segment import find_images, prepare_run
from core.inference.small_regions import connected_components, remove_small_regions
from robustsam_cli.main import cli

PROMPTS = {
    "a.png": [{"box": [4, 6, 40, 30]}, {"points": [[50, 20]], "labels": [1]}, {"box": [30, 10, 70, 50]}],
    "b.png": [{"box": [0, 0, 80, 60], "points": [[20, 20], [60, 40]], "labels": [1, 0]}, {"box": [10, 10, 30, 30]}],
    "c.png": [{"points": [[10, 10], [40, 30]], "labels": [1, 1]}],
}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_robustsam("vit_micro")


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("checkpoint") / "micro.pth"
    torch.save(model.state_dict(), path)
    return path


def make_images(folder: Path) -> Path:
    """Three 60x80 images: two RGB with a bright square, one 16-bit grayscale."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for name, (y, x) in {"a.png": (10, 15), "b.png": (25, 40)}.items():
        image = rng.integers(0, 80, (60, 80, 3), dtype=np.uint8)
        image[y : y + 20, x : x + 20] = 230
        iio.imwrite(folder / name, image)
    gray = (rng.random((60, 80)) * 20000).astype(np.uint16)
    gray[5:35, 5:45] = 60000
    iio.imwrite(folder / "c.png", gray)
    return folder


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    folder = make_images(tmp_path / "imgs")
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps(PROMPTS), encoding="utf-8")
    return folder, prompts


_REFERENCES: dict[tuple[bytes, str, bool], tuple[np.ndarray, np.ndarray]] = {}


def reference(model, image: np.ndarray, prompt: dict, multimask: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Masks (C, H, W) and IoU (C,) from the predictor with this prompt alone (memoised)."""
    key = (image.tobytes(), json.dumps(prompt), multimask)
    if key not in _REFERENCES:
        _REFERENCES[key] = _predict_alone(model, image, prompt, multimask)
    return _REFERENCES[key]


def _predict_alone(model, image: np.ndarray, prompt: dict, multimask: bool) -> tuple[np.ndarray, np.ndarray]:
    predictor = RobustPredictor(model)
    predictor.set_image(image)
    points = np.array(prompt["points"], dtype=np.float64) if "points" in prompt else None
    labels = np.array(prompt["labels"]) if "labels" in prompt else None
    box = np.array(prompt["box"], dtype=np.float64) if "box" in prompt else None
    masks, iou, _ = predictor.predict(points, labels, box, multimask_output=multimask)
    return masks, iou


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["segment", *args], catch_exceptions=False)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_png_masks_equal_the_predictor_masks_and_metadata_follows_amg(model, checkpoint, inputs, tmp_path: Path) -> None:
    folder, prompts = inputs
    out = tmp_path / "out"
    # The default batch decodes a.png's two boxes together; each must equal the box decoded alone.
    result = run(str(folder), "--prompts", str(prompts), "-o", str(out), "--checkpoint", str(checkpoint))
    assert result.exit_code == 0, result.output
    for name, image_prompts in PROMPTS.items():
        image = read_image(folder / name)
        with open(out / Path(name).stem / "metadata.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == len(image_prompts)
        for k, prompt in enumerate(image_prompts):
            masks, iou = reference(model, image, prompt)
            written = iio.imread(out / Path(name).stem / f"{k}.png")
            assert set(np.unique(written)) <= {0, 255}
            np.testing.assert_array_equal(written == 255, masks[0])
            assert int(rows[k]["area"]) == masks[0].sum()
            assert float(rows[k]["predicted_iou"]) == pytest.approx(float(iou[0]), abs=1e-5)
            assert [int(rows[k][c]) for c in ("crop_box_w", "crop_box_h")] == [80, 60]
    assert "images" in result.stdout


def test_write_mask_round_trips_as_0_and_255_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    mask = np.random.default_rng(0).random((37, 53)) > 0.5
    write_mask(tmp_path / "m.png", mask)
    pixels = iio.imread(tmp_path / "m.png")
    assert pixels.dtype == np.uint8 and set(np.unique(pixels)) == {0, 255}
    assert np.array_equal(pixels == 255, mask)
    assert [path.name for path in tmp_path.iterdir()] == ["m.png"]


def test_coco_rle_decodes_to_the_predictor_masks(model, checkpoint, inputs, tmp_path: Path) -> None:
    folder, prompts = inputs
    out = tmp_path / "out"
    result = run(str(folder), "--prompts", str(prompts), "-o", str(out), "--checkpoint", str(checkpoint), "--format", "coco")
    assert result.exit_code == 0, result.output
    results = json.loads((out / "coco_results.json").read_text())
    assert [r["file_name"] for r in results] == [name for name, ps in PROMPTS.items() for _ in ps]
    assert [r["image_id"] for r in results] == [1, 1, 1, 2, 2, 3]
    position = 0
    for name, image_prompts in PROMPTS.items():
        image = read_image(folder / name)
        for prompt in image_prompts:
            masks, iou = reference(model, image, prompt)
            record = results[position]
            decoded = mask_utils.decode({"size": record["segmentation"]["size"], "counts": record["segmentation"]["counts"].encode()})
            np.testing.assert_array_equal(decoded.astype(bool), masks[0])
            assert record["score"] == pytest.approx(float(iou[0]), abs=1e-5) and record["category_id"] == 1
            position += 1


def test_label_image_keeps_the_most_confident_mask_where_masks_overlap(model, checkpoint, inputs, tmp_path: Path) -> None:
    folder, prompts = inputs
    out = tmp_path / "out"
    assert run(str(folder), "--prompts", str(prompts), "-o", str(out), "--checkpoint", str(checkpoint), "--format", "label").exit_code == 0
    for name, image_prompts in PROMPTS.items():
        image = read_image(folder / name)
        refs = [reference(model, image, prompt) for prompt in image_prompts]
        expected = np.zeros(image.shape[:2], dtype=np.uint16)
        for k in sorted(range(len(refs)), key=lambda k: float(refs[k][1][0])):
            expected[refs[k][0][0]] = k + 1
        labels = iio.imread(out / name)
        assert labels.dtype == np.uint16
        np.testing.assert_array_equal(labels, expected)


def test_multimask_keeps_the_best_of_three_and_all_masks_keeps_all(model, checkpoint, inputs, tmp_path: Path) -> None:
    folder, prompts = inputs
    common = [str(folder), "--prompts", str(prompts), "--checkpoint", str(checkpoint), "--multimask"]
    assert run(*common, "-o", str(tmp_path / "best")).exit_code == 0
    assert run(*common, "-o", str(tmp_path / "all"), "--all-masks").exit_code == 0
    image = read_image(folder / "a.png")
    for k, prompt in enumerate(PROMPTS["a.png"]):
        masks, iou = reference(model, image, prompt, multimask=True)
        best = iio.imread(tmp_path / "best" / "a" / f"{k}.png") == 255
        np.testing.assert_array_equal(best, masks[int(np.argmax(iou))])
        for candidate in range(3):
            every = iio.imread(tmp_path / "all" / "a" / f"{3 * k + candidate}.png") == 255
            np.testing.assert_array_equal(every, masks[candidate])


def test_overlay_tints_masks_and_draws_boxes(checkpoint, inputs, tmp_path: Path) -> None:
    folder, prompts = inputs
    out = tmp_path / "out"
    assert run(str(folder), "--prompts", str(prompts), "-o", str(out), "--checkpoint", str(checkpoint), "--overlay").exit_code == 0
    image, overlay = read_image(folder / "a.png"), iio.imread(out / "a_overlay.png")
    masks = [iio.imread(out / "a" / f"{k}.png") == 255 for k in range(3)]
    assert overlay.shape == image.shape
    assert np.any(overlay[masks[0]] != image[masks[0]])
    # The first box's top edge (y = 6, x 4..39) is drawn in the first palette colour.
    assert np.all(overlay[6, 4:40] == core.inference.mask_writers.palette(3)[0])
    drawn = np.zeros(image.shape[:2], dtype=bool)
    for x0, y0, x1, y1 in ((4, 6, 40, 30), (30, 10, 70, 50)):
        drawn[[y0, y1 - 1], x0:x1] = True
        drawn[y0:y1, [x0, x1 - 1]] = True
    drawn[17:24, 47:54] = True  # around the point (50, 20)
    untouched = ~(masks[0] | masks[1] | masks[2] | drawn)
    assert untouched.any()
    np.testing.assert_array_equal(overlay[untouched], image[untouched])


def test_second_run_writes_nothing_new(checkpoint, inputs, tmp_path: Path) -> None:
    folder, prompts = inputs
    out = tmp_path / "out"
    for output_format in ("png", "coco"):
        args = [str(folder), "--prompts", str(prompts), "-o", str(out / output_format), "--checkpoint", str(checkpoint), "--format", output_format]
        assert run(*args).exit_code == 0
    times = {path: path.stat().st_mtime_ns for path in out.rglob("*")}
    for output_format in ("png", "coco"):
        args = [str(folder), "--prompts", str(prompts), "-o", str(out / output_format), "--checkpoint", str(checkpoint), "--format", output_format]
        result = run(*args)
        assert result.exit_code == 0
    assert {path: path.stat().st_mtime_ns for path in out.rglob("*")} == times


class Crash(Exception):
    """Stands for the process being killed."""


@pytest.mark.parametrize("output_format", ["png", "coco"])
def test_run_killed_midway_then_resumed_equals_an_uninterrupted_run(model, inputs, tmp_path: Path, monkeypatch, output_format: str) -> None:
    folder, prompts = inputs
    options = dict(prompts=prompts, output_format=output_format, overlay=True)
    prepare_run(model, [folder], tmp_path / "whole", **options).run()

    writer = {"png": core.inference.mask_writers.PngWriter, "coco": core.inference.mask_writers.CocoWriter}[output_format]
    original = writer.write
    written = []

    def write_then_crash(self, job, image, records):
        if len(written) == 1:
            raise Crash
        original(self, job, image, records)
        written.append(job.key)

    monkeypatch.setattr(writer, "write", write_then_crash)
    with pytest.raises(Crash):
        prepare_run(model, [folder], tmp_path / "resumed", **options).run()
    monkeypatch.setattr(writer, "write", original)
    run_after_crash = prepare_run(model, [folder], tmp_path / "resumed", **options)
    assert [job.key for job in run_after_crash.done] == ["a.png"]
    summary = run_after_crash.run()
    assert (summary.images, summary.skipped) == (2, 1)
    assert snapshot(tmp_path / "resumed") == snapshot(tmp_path / "whole")
    assert not [path for path in (tmp_path / "resumed").rglob("*") if ".tmp" in path.name]


@pytest.mark.parametrize("output_format", ["png", "coco"])
def test_writing_behind_segmentation_writes_what_the_plain_run_writes(model, inputs, tmp_path: Path, output_format: str) -> None:
    folder, prompts = inputs
    results = {}
    for write_behind in (False, True):
        run = prepare_run(model, [folder], tmp_path / str(write_behind), prompts=prompts, output_format=output_format, overlay=True)
        run.write_behind = write_behind
        seen = []
        summary = run.run(on_image=lambda result: seen.append((result.job.key, result.masks, result.error)))
        results[write_behind] = (snapshot(tmp_path / str(write_behind)), seen, summary.images, summary.masks, summary.failures)
    assert results[True] == results[False]
    assert [key for key, _, _ in results[True][1]] == ["a.png", "b.png", "c.png"]


def test_an_image_is_written_while_the_next_is_segmented(model, inputs, tmp_path: Path, monkeypatch) -> None:
    folder, prompts = inputs
    run = prepare_run(model, [folder], tmp_path / "out", prompts=prompts)
    order = ["a.png", "b.png", "c.png"]
    started = {key: threading.Event() for key in order}  # segmentation of the image began
    segment, write = run.segmenter, run.writers[0].write
    waited = []

    def segment_and_tell(image, image_prompts):
        next(event for event in started.values() if not event.is_set()).set()
        return segment(image, image_prompts)

    def write_once_the_next_image_started(job, image, records):
        if job.key != order[-1]:
            waited.append((job.key, started[order[order.index(job.key) + 1]].wait(timeout=20)))
        write(job, image, records)

    run.segmenter = segment_and_tell
    monkeypatch.setattr(run.writers[0], "write", write_once_the_next_image_started)
    run.run()
    assert waited == [("a.png", True), ("b.png", True)]


def test_bad_images_and_prompts_fail_alone_with_one_line_each(checkpoint, tmp_path: Path) -> None:
    folder = make_images(tmp_path / "imgs")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    prompts = {
        "a.png": [{"box": [4, 6, 40, 30]}, {"box": [10, 10, 90, 50]}],
        "b.png": [{"box": [0, 0, 20, 20]}],
        "corrupt.png": [{"box": [0, 0, 5, 5]}],
        "missing.png": [{"box": [0, 0, 5, 5]}],
    }
    prompt_file = tmp_path / "prompts.json"
    prompt_file.write_text(json.dumps(prompts), encoding="utf-8")
    out = tmp_path / "out"
    result = run(str(folder), "--prompts", str(prompt_file), "-o", str(out), "--checkpoint", str(checkpoint), "--overlay")
    assert result.exit_code == 1
    errors = sorted(line for line in result.stderr.splitlines() if line.startswith("Error: "))
    # The decoder's own words (Pillow's, in parentheses) are not ours to pin: the rest is.
    corrupt = re.escape(f"Error: {folder / 'corrupt.png'}: not a readable image (") + r"\w+: [^\n]+\)"
    assert len(errors) == 3 and re.fullmatch(corrupt, errors[0])
    assert errors[1:] == [
        f"Error: {prompt_file}: image 'a.png', prompt 1, field 'box': [10.0, 10.0, 90.0, 50.0] is outside the 80x60 image",
        f"Error: {prompt_file}: image 'missing.png' not found in {folder}",
    ]
    assert sorted(snapshot(out)) == ["b/0.png", "b/metadata.csv", "b_overlay.png"]


def test_malformed_prompt_json_is_bad_usage_and_writes_nothing(checkpoint, inputs, tmp_path: Path) -> None:
    folder, prompts = inputs
    prompts.write_text('{"a.png": [{"box": [1, 2, 3]}]}', encoding="utf-8")
    out = tmp_path / "out"
    result = run(str(folder), "--prompts", str(prompts), "-o", str(out), "--checkpoint", str(checkpoint))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {prompts}: image 'a.png', prompt 0, field 'box': expected [x0, y0, x1, y1] (4 numbers), got [1, 2, 3]"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "no built-in model: pass --checkpoint PATH"),
        (["--checkpoint", "CKPT", "--points-per-side", "8"], "--points-per-side is for segmenting everything"),
        (["--checkpoint", "CKPT", "--half", "--device", "cpu"], "fp16 (--half) needs a CUDA device"),
    ],
)
def test_usage_errors_exit_2(checkpoint, inputs, tmp_path: Path, extra: list[str], message: str, monkeypatch) -> None:
    monkeypatch.setattr("robustsam_cli.defaults.default_checkpoint", lambda: None)  # an installation without it
    folder, prompts = inputs
    extra = [str(checkpoint) if arg == "CKPT" else arg for arg in extra]
    result = run(str(folder), "--prompts", str(prompts), "-o", str(tmp_path / "out"), *extra)
    assert result.exit_code == 2 and message in result.stderr


def test_segment_everything_equals_the_generator_and_needs_no_prompts(model, checkpoint, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    image = np.zeros((48, 48, 3), dtype=np.uint8)
    image[8:30, 10:40] = 200
    iio.imwrite(folder / "only.png", image)
    options = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0", "--min-mask-region-area", "30"]
    result = run(str(folder), "-o", str(tmp_path / "out"), "--checkpoint", str(checkpoint), *options)
    assert result.exit_code == 0, result.output
    generator = RobustAutomaticMaskGenerator(
        model, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, min_mask_region_area=30
    )
    records = generator.generate(image)
    assert records
    with open(tmp_path / "out" / "only" / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(records)
    for k, record in enumerate(records):
        np.testing.assert_array_equal(iio.imread(tmp_path / "out" / "only" / f"{k}.png") == 255, record["segmentation"])
        assert [float(rows[k][c]) for c in ("point_input_x", "point_input_y")] == record["point_coords"][0]


def brute_force_components(mask: np.ndarray) -> np.ndarray:
    """8-connected labels in raster order of first pixel, by flood fill."""
    labels = np.zeros(mask.shape, dtype=np.int64)
    count = 0
    for start in zip(*np.nonzero(mask)):
        if labels[start]:
            continue
        count += 1
        stack = [start]
        labels[start] = count
        while stack:
            y, x = stack.pop()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not labels[ny, nx]:
                        labels[ny, nx] = count
                        stack.append((ny, nx))
    return labels


def test_connected_components_match_a_flood_fill() -> None:
    rng = np.random.default_rng(1)
    for _ in range(30):
        mask = rng.random(tuple(rng.integers(1, 25, size=2))) < rng.random()
        labels, sizes = connected_components(mask)
        expected = brute_force_components(mask)
        np.testing.assert_array_equal(labels, expected)
        np.testing.assert_array_equal(sizes, np.bincount(expected.ravel())[1:])


def test_remove_small_regions_fills_holes_and_drops_islands_like_sam() -> None:
    mask = np.zeros((30, 30), dtype=bool)
    mask[2:20, 2:20] = True
    mask[5:7, 5:7] = False  # a 4-px hole
    mask[25:27, 25:28] = True  # a 6-px island
    filled, changed = remove_small_regions(mask, 5, "holes")
    assert changed and filled[5:7, 5:7].all() and filled.sum() == mask.sum() + 4
    kept, changed = remove_small_regions(mask, 7, "islands")
    assert changed and not kept[25:27, 25:28].any() and kept.sum() == mask.sum() - 6
    unchanged, changed = remove_small_regions(mask, 4, "islands")
    assert not changed and unchanged is mask
    lone = np.zeros((10, 10), dtype=bool)
    lone[1:3, 1:3] = True
    lone[6:9, 6:9] = True
    largest, changed = remove_small_regions(lone, 100, "islands")
    assert changed and largest.sum() == 9 and largest[6:9, 6:9].all()


def test_find_images_recursive_globs_and_output_inside_input(tmp_path: Path) -> None:
    folder = make_images(tmp_path / "imgs")
    (folder / "sub").mkdir()
    iio.imwrite(folder / "sub" / "d.bmp", np.zeros((8, 8, 3), dtype=np.uint8))
    (folder / "notes.txt").write_text("not an image")
    (folder / "masks").mkdir()
    iio.imwrite(folder / "masks" / "m.png", np.zeros((8, 8), dtype=np.uint8))
    assert [image.key for image in find_images([folder]).images] == ["a.png", "b.png", "c.png"]
    found = find_images([folder], recursive=True, exclude=folder / "masks")
    assert [image.key for image in found.images] == ["a.png", "b.png", "c.png", "sub/d.bmp"]
    assert [image.key for image in find_images([str(folder / "*.png")]).images] == ["a.png", "b.png", "c.png"]
    assert [image.key for image in find_images([folder / "sub" / "d.bmp"]).images] == ["d.bmp"]
    with pytest.raises(InputError, match=r"nothing\*\.png: matches no image file"):
        find_images([str(folder / "nothing*.png")])
    with pytest.raises(InputError, match=r"absent: no such file or folder"):
        find_images([tmp_path / "absent"])


def test_two_images_with_one_output_name_are_refused(model, tmp_path: Path) -> None:
    folder = make_images(tmp_path / "imgs")
    iio.imwrite(folder / "a.jpg", np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(InputError, match=r"a\.png: its output .*a[/\\]metadata\.csv would overwrite that of .*a\.jpg"):
        prepare_run(model, [folder], tmp_path / "out")


def test_coco_instances_in_give_coco_results_with_their_image_and_category_ids(model, checkpoint, inputs, tmp_path: Path) -> None:
    folder, _ = inputs
    instances = {
        "images": [{"id": 40, "file_name": "b.png", "height": 60, "width": 80}, {"id": 41, "file_name": "a.png", "height": 60, "width": 80}],
        "annotations": [
            {"id": 1, "image_id": 41, "bbox": [10, 10, 21, 21], "category_id": 3, "segmentation": [[10, 10, 31, 10, 31, 31, 10, 31]]},
            {"id": 2, "image_id": 40, "bbox": [40, 25, 20, 20], "category_id": 5},
        ],
    }
    prompt_file = tmp_path / "instances.json"
    prompt_file.write_text(json.dumps(instances), encoding="utf-8")
    out = tmp_path / "out"
    args = [str(folder), "--prompts", str(prompt_file), "-o", str(out), "--checkpoint", str(checkpoint), "--format", "coco"]
    assert run(*args, "--prompt-from", "point").exit_code == 0
    results = json.loads((out / "coco_results.json").read_text())
    assert [(r["file_name"], r["image_id"], r["category_id"]) for r in results] == [("a.png", 41, 3), ("b.png", 40, 5)]
    # The 21x21 square (10..30) has its deepest pixel at (20, 20): point (20.5, 20.5); the box-only annotation uses its centre.
    for record, name, point in ((results[0], "a.png", [20.5, 20.5]), (results[1], "b.png", [50.0, 35.0])):
        masks, iou = reference(model, read_image(folder / name), {"points": [point], "labels": [1]})
        decoded = mask_utils.decode({"size": record["segmentation"]["size"], "counts": record["segmentation"]["counts"].encode()})
        np.testing.assert_array_equal(decoded.astype(bool), masks[0])
