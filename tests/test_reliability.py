"""Files people can read, writes that fail cleanly, photos the right way up, odd input files.

Output modes follow the umask; a write error (full disk, no permission, read-only file system)
stops a run with one line and exit 1, leaving no partial or temporary file, and a rerun resumes;
EXIF orientations are applied; prompt files with a BOM, GIFs and multi-page TIFFs are read; an
image listed twice and duplicate COCO ids are errors.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import core.io.images
from core.data.datasets import CocoInstancesDataset
from core.data.prompt_files import load_prompts
from core.errors import InputError
from core.io import read_image, read_image_size
from robustsam_cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = {name: [{"box": [4, 4, 40, 30]}, {"box": [20, 10, 60, 44]}] for name in ("a.png", "b.png", "c.png")}


def _images(folder: Path, names=("a.png", "b.png", "c.png")) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        image = rng.integers(0, 80, (48, 64, 3), dtype=np.uint8)
        image[8 + index : 30, 10:40] = 230
        iio.imwrite(folder / name, image)
    return folder


def _segment(*args):
    return CliRunner().invoke(cli, ["segment", *map(str, args)])


@pytest.fixture
def job(tmp_path: Path) -> tuple[Path, Path, Path]:
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps(PROMPTS), encoding="utf-8")
    return _images(tmp_path / "imgs"), prompts, tmp_path / "out"


def _leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob("*") if ".tmp" in path.name)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_outputs_get_the_mode_open_would_give(tmp_path: Path, umask: int, mode: int) -> None:
    """Every atomic writer (masks, images, JSON, torch files) honours the umask, as open() does."""
    script = (
        "import os, sys, numpy, torch\n"
        "from core.io import atomic_path, write_image, write_json, write_mask\n"
        "out = sys.argv[1]\n"
        "write_mask(os.path.join(out, 'm.png'), numpy.ones((4, 4), bool))\n"
        "write_image(os.path.join(out, 'i.png'), numpy.zeros((4, 4, 3), numpy.uint8))\n"
        "write_json(os.path.join(out, 'r.json'), {'a': 1})\n"
        "with atomic_path(os.path.join(out, 'c.pth')) as tmp: torch.save({}, tmp)\n"
        "open(os.path.join(out, 'plain.txt'), 'w').close()\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, env=env,
                   preexec_fn=lambda: os.umask(umask))
    modes = {path.name: path.stat().st_mode & 0o777 for path in tmp_path.iterdir()}
    assert modes == dict.fromkeys(["m.png", "i.png", "r.json", "c.pth", "plain.txt"], mode)


def _failing_imwrite(monkeypatch, fail_at: int, error: BaseException) -> None:
    """Makes the `fail_at`-th image write put half its bytes into the file, then raise `error`."""
    real = iio.imwrite
    calls = []

    def imwrite(path, image, **kwargs):
        calls.append(path)
        if len(calls) == fail_at:
            Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
            raise error
        return real(path, image, **kwargs)

    monkeypatch.setattr(core.io.images.iio, "imwrite", imwrite)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS])
def test_a_write_error_stops_the_run_with_one_line_and_a_rerun_resumes(monkeypatch, job, code) -> None:
    images, prompts, out = job
    _failing_imwrite(monkeypatch, 3, OSError(code, os.strerror(code)))  # b's first mask
    result = _segment(images, "--prompts", prompts, "-o", out)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: {out / 'b' / '0.png'}: cannot write ({os.strerror(code)})"]
    assert _leftovers(out) == [] and not (out / "b" / "0.png").exists()
    assert (out / "a" / "metadata.csv").is_file() and not (out / "c").exists()  # stopped at once
    monkeypatch.undo()
    done = (out / "a" / "metadata.csv").stat().st_mtime_ns
    resumed = _segment(images, "--prompts", prompts, "-o", out)
    assert resumed.exit_code == 0, resumed.output
    assert all((out / stem / "metadata.csv").is_file() for stem in "abc")
    assert (out / "a" / "metadata.csv").stat().st_mtime_ns == done  # resumed: a was not redone


def test_a_crash_inside_a_write_leaves_no_partial_file_and_resumes(monkeypatch, job, tmp_path) -> None:
    images, prompts, out = job
    _failing_imwrite(monkeypatch, 4, KeyboardInterrupt())  # b's second mask, half written
    result = _segment(images, "--prompts", prompts, "-o", out)
    assert result.exit_code != 0
    assert _leftovers(out) == []
    for path in out.rglob("*.png"):
        iio.imread(path)  # every file there is whole
    assert not (out / "b" / "1.png").exists() and not (out / "b" / "metadata.csv").exists()
    monkeypatch.undo()
    assert _segment(images, "--prompts", prompts, "-o", out).exit_code == 0
    clean = tmp_path / "clean"
    assert _segment(images, "--prompts", prompts, "-o", clean).exit_code == 0
    files = sorted(path.relative_to(out) for path in out.rglob("*") if path.is_file())
    assert files == sorted(path.relative_to(clean) for path in clean.rglob("*") if path.is_file())
    assert all((out / name).read_bytes() == (clean / name).read_bytes() for name in files)


def test_overwrite_with_fewer_prompts_removes_stale_masks(job) -> None:
    images, prompts, out = job
    assert _segment(images, "--prompts", prompts, "-o", out).exit_code == 0
    assert sorted(path.name for path in (out / "a").glob("*.png")) == ["0.png", "1.png"]
    prompts.write_text(json.dumps({"a.png": PROMPTS["a.png"][:1]}), encoding="utf-8")
    assert _segment(images, "--prompts", prompts, "-o", out, "--overwrite").exit_code == 0
    assert sorted(path.name for path in (out / "a").glob("*.png")) == ["0.png"]


def test_an_image_named_twice_in_a_prompt_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "twice.json"
    path.write_text('{"a.png": [{"box": [0, 0, 4, 4]}], "a.png": [{"box": [1, 1, 5, 5]}]}', encoding="utf-8")
    with pytest.raises(InputError, match="image 'a.png' is listed twice"):
        load_prompts(path)
    path.write_text('{"a.png": [{"box": [0, 0, 4, 4], "box": [1, 1, 5, 5]}]}', encoding="utf-8")
    with pytest.raises(InputError, match="key 'box' appears twice"):
        load_prompts(path)


def _coco(annotation_ids=(1, 2), image_ids=(1, 2)) -> dict:
    images = [{"id": image_id, "file_name": f"im{index}.png", "height": 48, "width": 64} for index, image_id in enumerate(image_ids)]
    annotations = [{"id": annotation_id, "image_id": image_ids[0], "bbox": [2, 2, 10, 10], "category_id": 1,
                    "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]], "area": 100, "iscrowd": 0} for annotation_id in annotation_ids]
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}


def test_duplicate_coco_ids_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(_coco(annotation_ids=(7, 7))))
    with pytest.raises(InputError, match="duplicate annotation id 7"):
        load_prompts(path)
    with pytest.raises(InputError, match="duplicate annotation id 7"):
        CocoInstancesDataset(_images(tmp_path / "imgs", ("im0.png", "im1.png")), path)
    path.write_text(json.dumps(_coco(image_ids=(3, 3))))
    with pytest.raises(InputError, match="duplicate image id 3"):
        CocoInstancesDataset(tmp_path / "imgs", path)
    path.write_text(json.dumps(_coco()))
    assert len(load_prompts(path).prompts["im0.png"]) == 2 and len(CocoInstancesDataset(tmp_path / "imgs", path)) == 1


def test_a_prompt_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "windows.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(PROMPTS).encode("utf-8"))
    assert len(load_prompts(path).prompts["a.png"]) == 2


# A 3x2 picture of distinct colours: where each corner lands shows the rotation.
PICTURE = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 0]], [[0, 255, 255], [255, 0, 255]]], np.uint8)
UPRIGHT = {3: np.rot90(PICTURE, 2), 6: np.rot90(PICTURE, -1), 8: np.rot90(PICTURE, 1)}


def _photo(path: Path, orientation: int) -> Path:
    """A JPEG of PICTURE (each pixel a 16x16 block) stored with EXIF `orientation`, as cameras save it."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.kron(PICTURE, np.ones((16, 16, 1), np.uint8))).save(path, quality=95, exif=exif)
    return path


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_photos_are_read_upright(tmp_path: Path, orientation: int) -> None:
    path = _photo(tmp_path / "photo.jpg", orientation)
    with pytest.warns(core.io.images.ImageNotice, match="read upright"):
        image = read_image(path)
    assert read_image_size(path) == image.shape[:2] == (UPRIGHT[orientation].shape[0] * 16, UPRIGHT[orientation].shape[1] * 16)
    blocks = image[8::16, 8::16].astype(int)  # the centre of every block
    assert np.abs(blocks - UPRIGHT[orientation]).max() < 40  # JPEG's error, far below a colour swap


def test_segment_says_once_that_photos_were_rotated(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(2):
        _photo(folder / f"p{index}.jpg", 6)
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({f"p{index}.jpg": [{"box": [4, 4, 40, 28]}] for index in range(2)}))  # inside 48x32, not 32x48
    result = _segment(folder, "--prompts", prompts, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert [line for line in result.output.splitlines() if line.startswith("Note:")] == [f"Note: {core.io.images.ROTATED_NOTICE}"]
    assert iio.imread(tmp_path / "out" / "p0" / "0.png").shape == (32, 48)  # the upright size


def test_gif_and_multipage_tiff_give_their_first_frame_and_unknown_formats_are_named(tmp_path: Path) -> None:
    folder = _images(tmp_path / "imgs", ("a.png",))
    frames = [np.full((48, 64, 3), value, np.uint8) for value in (200, 20)]
    iio.imwrite(folder / "anim.gif", np.stack(frames))
    iio.imwrite(folder / "pages.tif", np.stack(frames))  # one series of two pages
    iio.imwrite(folder / "scan.tif", np.stack(frames), is_batch=True)  # two separate pages
    (folder / "notes.xyz").write_bytes(b"not an image")
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({name: [{"box": [4, 4, 40, 30]}] for name in ("anim.gif", "pages.tif", "scan.tif", "notes.xyz")}))
    result = _segment(folder, "--prompts", prompts, "-o", tmp_path / "out")
    assert result.exit_code == 1, result.output  # notes.xyz failed, the others were written
    assert f"Note: {core.io.images.FIRST_FRAME_NOTICE}" in result.output
    assert f"Error: {folder / 'notes.xyz'}: unsupported image format '.xyz'" in result.output
    assert "not found" not in result.output
    assert all((tmp_path / "out" / stem / "metadata.csv").is_file() for stem in ("anim", "pages", "scan"))
    for name in ("anim.gif", "pages.tif", "scan.tif"):
        assert read_image(folder / name).shape == (48, 64, 3) and read_image(folder / name).min() > 100  # the bright first frame
