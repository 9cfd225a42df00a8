"""`eval --image-batch` and `prior --image-batch`: the same results for every N."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner

from robustsam_cli.main import cli

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = [(96, 128), (80, 80), (64, 120), (96, 72), (70, 90)]


def _scene(index: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """An image with a rectangle and a disc, and their masks (2, H, W)."""
    image = np.full((height, width, 3), 40 + 5 * index, np.uint8)
    rectangle = np.zeros((height, width), bool)
    rectangle[8 + index : height // 2, 10 : width // 2 + index] = True
    rows, cols = np.mgrid[:height, :width]
    disc = (rows - 0.7 * height) ** 2 + (cols - 0.7 * width) ** 2 < (12 + index) ** 2
    image[rectangle] = (200, 50, 50)
    image[disc] = (50, 200, 80)
    return image, np.stack([rectangle, disc])


def _invoke(*args: object) -> None:
    result = CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def _files(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_eval_results_are_the_same_for_every_image_batch(tmp_path: Path) -> None:
    split = tmp_path / "data" / "MSRA10K"
    for folder in ("clear", "masks", "dark"):
        (split / folder).mkdir(parents=True)
    for index, (height, width) in enumerate(SIZES):
        image, masks = _scene(index, height, width)
        iio.imwrite(split / "clear" / f"im{index}.png", image)
        iio.imwrite(split / "dark" / f"im{index}.png", image // 3)
        np.save(split / "masks" / f"im{index}.npy", masks)
    outputs = []
    for image_batch in (1, 4):
        out = tmp_path / f"eval_{image_batch}"
        _invoke("eval", "--split", "seen", "--data", tmp_path / "data", "--prompt", "box", "--out", out,
                "--model", "robustsam=default", "--model", "sam=default:sam", "--image-batch", image_batch)
        outputs.append(out)
    one, four = (_files(out) for out in outputs)
    assert "results.json" in one and one == four
    rows = next(t for t in json.loads(one["results.json"])["tables"] if t["dataset"] == "MSRA10K")["rows"]
    assert rows[0]["images"] == len(SIZES)


def test_prior_files_are_the_same_for_every_image_batch(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for index, (height, width) in enumerate(SIZES):
        iio.imwrite(folder / f"im{index}.png", _scene(index, height, width)[0])
    outputs = []
    for image_batch in (1, 4):
        out = tmp_path / f"prior_{image_batch}"
        _invoke("prior", folder, "-o", out, "--task", "deblur", "--features", "--points-per-side", "4",
                "--pred-iou-thresh", "0", "--stability-score-thresh", "0", "--image-batch", image_batch)
        outputs.append(out)
    one, four = (_files(out) for out in outputs)
    assert set(one) == set(four) and len(one) == 1 + 3 * len(SIZES)
    for name, content in one.items():
        if name.endswith(".npz"):  # zip members carry their write time: compare the arrays
            with np.load(outputs[0] / name) as first, np.load(outputs[1] / name) as second:
                assert first.files == second.files
                assert all(np.array_equal(first[key], second[key]) for key in first.files)
        else:
            assert content == four[name], name
