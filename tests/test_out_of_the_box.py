"""Out of the box: nothing empty in silence, the name `default`, the stored segment-everything
settings, no folder left by a command that fails early, and plain lines when output is not a terminal."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner

from core.data.photo_scenes import HELD_OUT_PHOTOS, PHOTO_SPLITS, TRAIN_PHOTOS, make_photo_scene
from core.model.default_model import DEFAULT_CHECKPOINT, DEFAULT_NOTICE, read_amg_defaults, save_with_amg_defaults
from robustsam_cli.main import cli

pytestmark = pytest.mark.usefixtures("one_thread")
# A generator that keeps nothing: no predicted IoU exceeds 1.
NOTHING = ["--pred-iou-thresh", "1.0", "--points-per-side", "2"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(arg) for arg in args])


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    iio.imwrite(folder / "scene.png", make_photo_scene(0, size=64).image)
    return folder


def test_segment_everything_with_no_mask_warns_counts_and_fails_with_strict(tmp_path, images, micro_checkpoint):
    result = invoke("segment", images, "-o", tmp_path / "a", "--checkpoint", micro_checkpoint, "--device", "cpu", *NOTHING)
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("Warning:"))
    assert "scene.png: segment-everything found no mask" in line and "--pred-iou-thresh (now 1)" in line
    assert "no masks" in result.output
    strict = invoke("segment", images, "-o", tmp_path / "b", "--checkpoint", micro_checkpoint, "--device", "cpu", "--strict", *NOTHING)
    assert strict.exit_code == 1
    assert any(line.startswith("Error:") and "scene.png" in line for line in strict.output.splitlines())


def test_prior_with_one_segment_warns_and_fails_with_strict(tmp_path, images, micro_checkpoint):
    common = ["--task", "deblur", "--checkpoint", micro_checkpoint, "--device", "cpu", *NOTHING]
    result = invoke("prior", images, "-o", tmp_path / "a", *common)
    assert result.exit_code == 0, result.output
    assert "Warning:" in result.output and "scene.png: one segment covers the image" in result.output
    assert "0 failed, 1 a single segment ->" in result.output
    strict = invoke("prior", images, "-o", tmp_path / "b", "--strict", *common)
    assert strict.exit_code == 2
    assert strict.output.strip().splitlines()[-1].startswith("Error:")


def test_stored_generator_settings_apply_unless_given(tmp_path, images, micro_state):
    loose = tmp_path / "loose.pth"
    save_with_amg_defaults(micro_state, {"points_per_side": 2, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}, loose)
    assert read_amg_defaults(loose) == {"points_per_side": 2, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    found = invoke("segment", images, "-o", tmp_path / "a", "--checkpoint", loose, "--device", "cpu")
    assert found.exit_code == 0 and "Warning" not in found.output, found.output
    assert len(list((tmp_path / "a" / "scene").glob("*.png"))) > 0
    given = invoke("segment", images, "-o", tmp_path / "b", "--checkpoint", loose, "--device", "cpu", "--pred-iou-thresh", "1.0")
    assert "--pred-iou-thresh (now 1)" in given.output and "--points-per-side (now 2)" in given.output


def test_real_checkpoints_keep_segment_anythings_defaults(micro_checkpoint):
    assert read_amg_defaults(micro_checkpoint) == {}
    result = invoke("info", micro_checkpoint)
    assert "segment-anything's own" in result.output


def test_default_names_the_built_in_model(tmp_path, images):
    info = invoke("info", "default")
    assert info.exit_code == 0, info.output
    assert str(DEFAULT_CHECKPOINT) in info.output and "segment-everything defaults (used when not given): --points-per-side" in info.output
    segment = invoke("segment", images, "-o", tmp_path / "s", "--checkpoint", "default", "--device", "cpu", "--points-per-side", "4")
    assert segment.exit_code == 0, segment.output
    trained = invoke("train", "--data", "synthetic:2", "--image-size", "128", "--batch-size", "2", "--max-steps", "1",
                     "--val-every", "0", "--sam-checkpoint", "default", "--checkpoint", "default", "-o", tmp_path / "t")
    assert trained.exit_code == 0, trained.output


def test_train_without_checkpoint_starts_from_the_built_in_model_in_plain_lines(tmp_path):
    result = invoke("train", "--data", "synthetic:4", "--image-size", "128", "--batch-size", "2", "--max-steps", "2",
                    "--log-every", "1", "--val-every", "2", "--val-count", "2", "-o", tmp_path / "run")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert DEFAULT_NOTICE in lines  # one whole line, not wrapped
    assert any(line.startswith("train step 2/2 total") and line.endswith("img/s") for line in lines)
    assert any(line.startswith("step 2 validation IoU: robust/degraded") and "sam/clear" in line for line in lines)
    assert "…" not in result.output
    assert (tmp_path / "run" / "final.pth").is_file()


@pytest.mark.parametrize("bad", [["--data", "nothing:3"], ["--data", "synthetic:2", "--checkpoint", "missing.pth"]])
def test_a_command_that_fails_early_leaves_no_folder(tmp_path, bad):
    result = invoke("train", *bad, "--image-size", "128", "--max-steps", "1", "-o", tmp_path / "run")
    assert result.exit_code == 2
    assert not (tmp_path / "run").exists()


def test_photo_scenes_are_seeded_disjoint_and_keep_their_photographs_apart():
    first, again = make_photo_scene(3, size=64), make_photo_scene(3, size=64)
    assert np.array_equal(first.image, again.image) and np.array_equal(first.masks, again.masks)
    assert first.image.shape == (64, 64, 3) and first.masks.dtype == bool
    for seed in range(6):
        scene = make_photo_scene(seed, size=64, split="held_out")
        assert len(scene.masks) >= 1 and scene.masks.sum(0).max() == 1
    assert not set(TRAIN_PHOTOS) & set(HELD_OUT_PHOTOS)
    assert set(PHOTO_SPLITS) == {"train", "held_out"}
    assert not np.array_equal(make_photo_scene(3, size=64, split="held_out").image, first.image)


def test_photos_data_spec_trains(tmp_path):
    from train.data import open_dataset

    samples = open_dataset("photos:3:held_out", split="", image_dir=None, size=64)
    assert len(samples) == 3 and samples[0].name == "photos-held_out-000000"
    with pytest.raises(Exception, match="photos:N"):
        open_dataset("photos:3:nowhere", split="", image_dir=None, size=64)
