"""`robustsam degrade`: the published layout, masks, resuming, errors and the preview sheet."""

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner

from core.degradations.dataset import file_seed
from core.degradations.preview import GAP, LABEL_HEIGHT, apply, to_tensor, to_uint8
from robustsam_cli.main import cli


def _picture(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    return np.kron(coarse, np.ones((8, 8, 1), dtype=np.uint8))


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """Three images (two 48x64, one 40x56) and their masks in three formats."""
    images = tmp_path / "images"
    images.mkdir()
    iio.imwrite(images / "a.png", _picture(48, 64, 0))
    iio.imwrite(images / "b.png", _picture(48, 64, 1))
    iio.imwrite(images / "c.png", _picture(40, 56, 2))
    masks = tmp_path / "masks"
    masks.mkdir()
    labels = np.zeros((48, 64), np.uint8)
    labels[:10] = 3
    labels[20:30, :5] = 7
    iio.imwrite(masks / "a.png", labels)  # label PNG: two objects
    (masks / "b").mkdir()
    for i in range(3):  # a folder of binary masks: three objects
        plane = np.zeros((48, 64), np.uint8)
        plane[i * 10 : i * 10 + 5] = 255
        iio.imwrite(masks / "b" / f"{i}.png", plane)
    np.save(masks / "c.npy", np.ones((1, 40, 56), bool))
    return tmp_path


def _run(*args: str):
    return CliRunner().invoke(cli, ["degrade", *args])


def test_writes_the_published_layout(source: Path):
    out = source / "out"
    result = _run(str(source / "images"), "-o", str(out), "--masks", str(source / "masks"),
                  "--types", "brightness,frosted_glass_blur", "--batch-size", "2", "--seed", "3")
    assert result.exit_code == 0, result.output
    for folder in ("clear", "brightness", "frosted_glass_blur"):
        assert sorted(p.name for p in (out / folder).iterdir()) == ["a.png", "b.png", "c.png"]
    assert (out / "clear" / "a.png").read_bytes() == (source / "images" / "a.png").read_bytes()
    masks = {name: np.load(out / "masks" / f"{name}.npy") for name in "abc"}
    assert {name: m.shape for name, m in masks.items()} == {"a": (2, 48, 64), "b": (3, 48, 64), "c": (1, 40, 56)}
    assert all(m.dtype == bool for m in masks.values())
    assert masks["a"][0, :10].all() and not masks["a"][0, 10:].any()  # label 3 first, then label 7
    assert masks["a"][1, 20:30, :5].all() and masks["a"][1].sum() == 50
    # each file is what the library gives with that file's seed (PNG is lossless)
    clear = iio.imread(source / "images" / "b.png")
    expected = to_uint8(apply(to_tensor(clear), "brightness", 3, [file_seed(3, "brightness", "b.png")]))[0]
    assert np.array_equal(iio.imread(out / "brightness" / "b.png"), expected)
    assert "brightness" in result.output and "written" in result.output
    assert not list(out.rglob("*.tmp*"))


def test_output_does_not_depend_on_batch_size(source: Path):
    args = [str(source / "images"), "--types", "gauss_noise,motion_blur"]
    assert _run(*args, "-o", str(source / "one"), "--batch-size", "1").exit_code == 0
    assert _run(*args, "-o", str(source / "three"), "--batch-size", "3").exit_code == 0
    for kind in ("gauss_noise", "motion_blur"):
        for name in ("a.png", "b.png", "c.png"):
            one = iio.imread(source / "one" / kind / name).astype(int)
            three = iio.imread(source / "three" / kind / name).astype(int)
            assert np.abs(one - three).max() <= 1  # float summation order may flip a rounding


def test_resumes_and_overwrites(source: Path):
    out = source / "out"
    args = [str(source / "images"), "-o", str(out), "--types", "contrast"]
    assert _run(*args).exit_code == 0
    marker = np.zeros((48, 64, 3), np.uint8)
    iio.imwrite(out / "contrast" / "a.png", marker)
    (out / "clear" / "b.png").unlink()
    result = _run(*args)
    assert result.exit_code == 0
    assert np.array_equal(iio.imread(out / "contrast" / "a.png"), marker)  # kept
    assert (out / "clear" / "b.png").exists()  # the missing one is written again
    assert _run(*args, "--overwrite").exit_code == 0
    assert not np.array_equal(iio.imread(out / "contrast" / "a.png"), marker)


def test_list_names_every_type():
    result = _run("--list")
    assert result.exit_code == 0
    for name in ("snow", "ISO_noise", "frosted_glass_blur", "identity", "mixed"):
        assert name in result.output


def test_preview_sheet(source: Path):
    sheet_path = source / "sheet.png"
    result = _run("--preview", str(source / "images" / "a.png"), "-o", str(sheet_path),
                  "--types", "fog,brightness,mixed")
    assert result.exit_code == 0, result.output
    sheet = iio.imread(sheet_path)
    tile_w, tile_h = 64, 48  # smaller than a tile: kept at full size
    assert sheet.shape == (GAP + tile_h + LABEL_HEIGHT + GAP, GAP + 4 * (tile_w + GAP), 3)
    labels = sheet[GAP : GAP + LABEL_HEIGHT, GAP : GAP + tile_w]
    assert (labels > 200).any()  # white label text on the dark strip
    clear = sheet[GAP + LABEL_HEIGHT : GAP + LABEL_HEIGHT + tile_h, GAP : GAP + tile_w]
    assert np.array_equal(clear, iio.imread(source / "images" / "a.png"))
    fog = sheet[GAP + LABEL_HEIGHT : GAP + LABEL_HEIGHT + tile_h, 2 * GAP + tile_w : 2 * GAP + 2 * tile_w]
    assert not np.array_equal(fog, clear)


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda s: [str(s / "nowhere"), "-o", str(s / "out")], "not a folder of images"),
        (lambda s: [str(s / "images"), "-o", str(s / "out"), "--types", "hail"], "--types: unknown degradation"),
        (lambda s: [str(s / "images"), "-o", str(s / "out"), "--masks", str(s)], "no mask for a.png"),
        (lambda s: ["--preview", str(s / "missing.png"), "-o", str(s / "sheet.png")], "no such image file"),
        (lambda s: [str(s / "images"), "-o", str(s / "out"), "--device", "abacus"], "--device:"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(source: Path, make_args, message):
    result = _run(*make_args(source))
    assert result.exit_code == 2
    assert message in result.output and result.output.count("\n") == 1
    assert not (source / "out").exists() and not (source / "sheet.png").exists()


def test_mask_of_another_size_is_rejected(source: Path):
    np.save(source / "masks" / "c.npy", np.ones((1, 41, 56), bool))
    result = _run(str(source / "images"), "-o", str(source / "out"), "--masks", str(source / "masks"),
                  "--types", "brightness")
    assert result.exit_code == 2
    assert "c.npy: masks are 56x41, the image is 56x40" in result.output
    assert not (source / "out" / "masks" / "c.npy").exists()
