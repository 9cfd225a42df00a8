"""`robustsam degrade` on videos: degradations consistent over time (steady fog and low light,
falling rain, motion blur from the video's own motion, noise drawn per frame), seeded and
resumable, annotations carried over, bad videos refused with one line and exit 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from core.io import read_pixels, write_image
from core.video import FrameFolder, degrade_frames, write_video
from core.video.degrade import fall_offset
from robustsam_cli.main import cli

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = (40, 56)
CPU = torch.device("cpu")


def frames_folder(path, count: int, moving: bool = True):
    """Numbered PNG frames: a grey ramp with a white 12x12 square moving right 3 px per frame."""
    height, width = SIZE
    for index in range(count):
        frame = np.zeros((height, width, 3), dtype=np.uint8)
        frame[...] = np.linspace(30, 120, height, dtype=np.uint8)[:, None, None]
        x = 6 + (3 * index if moving else 0)
        frame[14:26, x : x + 12] = 255
        write_image(path / f"{index:05d}.png", frame)
    return FrameFolder(path)


def test_fog_and_low_light_stay_put_noise_changes_every_frame(tmp_path):
    video = frames_folder(tmp_path / "still", 4, moving=False)
    for kind in ("fog", "brightness"):
        out = degrade_frames(video, range(4), kind, level=3, seed=0, device=CPU)
        assert all(np.array_equal(out[0], other) for other in out[1:]), kind
        assert not np.array_equal(out[0], video[0])
    noisy = degrade_frames(video, range(4), "gauss_noise", level=3, seed=0, device=CPU)
    assert not np.array_equal(noisy[0], noisy[1])
    # seeded: the same frames again, alone or in another batch
    np.testing.assert_array_equal(degrade_frames(video, [2], "gauss_noise", level=3, seed=0, device=CPU)[0], noisy[2])
    assert not np.array_equal(degrade_frames(video, [2], "gauss_noise", level=3, seed=1, device=CPU)[0], noisy[2])


def test_rain_falls_down_the_picture(tmp_path):
    height, width = SIZE
    flat = tmp_path / "flat"
    for index in range(3):  # a flat frame: all that changes between frames is the rain
        write_image(flat / f"{index:05d}.png", np.full((height, width, 3), 90, dtype=np.uint8))
    out = degrade_frames(FrameFolder(flat), range(3), "rain", level=3, seed=0, device=CPU)
    step = fall_offset("rain", 1, height)
    assert step > 0 and not np.array_equal(out[0], out[1])
    np.testing.assert_array_equal(np.roll(out[0], step, axis=0), out[1])
    np.testing.assert_array_equal(np.roll(out[0], fall_offset("rain", 2, height), axis=0), out[2])


def test_motion_blur_follows_the_motion(tmp_path):
    still = frames_folder(tmp_path / "still", 5, moving=False)
    np.testing.assert_array_equal(degrade_frames(still, [2], "motion_blur", level=1, seed=0, device=CPU)[0], still[2])
    moving = frames_folder(tmp_path / "moving", 5)
    blurred = degrade_frames(moving, [2], "motion_blur", level=1, seed=0, device=CPU)[0].astype(int)
    row, column = blurred[20, :, 0], blurred[:, 18, 0]  # across the square, along and across the motion
    assert ((row > 140) & (row < 250)).sum() >= 4  # the square smeared left and right (3 frames, 3 px apart)
    assert ((column > 140) & (column < 250)).sum() == 0  # its top and bottom edges stay sharp


def test_cli_degrades_an_mp4_seeded_resumable_with_annotations(tmp_path):
    source = tmp_path / "in"
    clip = frames_folder(tmp_path / "frames", 6)
    source.mkdir()
    write_video(source / "clip.mp4", list(clip), fps=8)
    labels = np.zeros(SIZE, dtype=np.uint8)
    labels[14:26, 6:18] = 1
    for index in range(6):
        write_image(tmp_path / "annotations" / "clip" / f"{index:05d}.png", labels)
    args = ["degrade", str(source), "-o", str(tmp_path / "out"), "--types", "rain,gauss_noise",
            "--masks", str(tmp_path / "annotations")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    for folder in ("clear", "masks", "rain", "gauss_noise"):
        assert len(list((out / folder / "clip").iterdir())) == 6, folder
    assert (out / "masks" / "clip" / "00003.png").read_bytes() == (tmp_path / "annotations" / "clip" / "00003.png").read_bytes()
    first = {p.name: p.read_bytes() for p in (out / "rain" / "clip").iterdir()}
    (out / "rain" / "clip" / "00004.jpg").unlink()
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert {p.name: p.read_bytes() for p in (out / "rain" / "clip").iterdir()} == first
    assert read_pixels(out / "rain" / "clip" / "00000.jpg").shape == (*SIZE, 3)


def test_cli_refuses_bad_videos_with_one_line(tmp_path):
    frames_folder(tmp_path / "clips" / "seq", 3)
    (tmp_path / "clips" / "seq" / "00001.png").unlink()
    result = CliRunner().invoke(cli, ["degrade", str(tmp_path / "clips"), "-o", str(tmp_path / "out"), "--types", "fog"])
    assert result.exit_code == 2
    assert "seq: gap in the frames: frame 1 missing" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "cut.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    result = CliRunner().invoke(cli, ["degrade", str(tmp_path / "broken"), "-o", str(tmp_path / "out"), "--types", "fog"])
    assert result.exit_code == 2 and "cut.mp4: not a readable video" in result.output
    assert len(result.output.strip().splitlines()) == 1
