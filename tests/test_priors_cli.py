"""`robustsam prior` on a vit_micro model with synthetic weights."""

import json

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner

from core.model.build import build_robustsam
from core.inference.predictor import RobustPredictor
from priors.encoding import gray_coded_map, masks_from_records, segment_partition
from priors.generate import PriorGenerator
from robustsam_cli.main import cli

pytestmark = pytest.mark.usefixtures("one_thread")

# Synthetic weights rarely pass SAM's quality thresholds; open them so that masks come out.
GENERATOR = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]


@pytest.fixture
def checkpoint(micro_checkpoint):
    return micro_checkpoint


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.png"):
        image = rng.integers(0, 40, size=(36, 50, 3), dtype=np.uint8)
        image[4:20, 8:30] += 180
        iio.imwrite(tmp_path / "in" / name, image)
    return tmp_path / "in"


def _prior(*args):
    return CliRunner().invoke(cli, ["prior", *map(str, args)])


def test_prior_files_match_generator_and_features(tmp_path, images, checkpoint):
    result = _prior("--task", "deblur", images, "-o", tmp_path / "out", "--checkpoint", checkpoint, "--features", "--device", "cpu", *GENERATOR)
    assert result.exit_code == 0, result.output
    model = build_robustsam(None, checkpoint)
    generator = PriorGenerator(model, points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0)
    for name in ("a", "sub/b"):
        image = iio.imread(images / f"{name}.png")
        expected = gray_coded_map(masks_from_records(generator.generator.generate(image), image.shape[:2]), shape=image.shape[:2])
        gray = iio.imread(tmp_path / "out" / f"{name}.gray.png")
        assert gray.dtype == np.uint8 and gray.shape == image.shape[:2]
        np.testing.assert_array_equal(gray, expected)
        stored = np.load(tmp_path / "out" / f"{name}.segments.npz")
        assert stored["masks"].dtype == np.uint8 and stored["masks"].max() == 1
        np.testing.assert_array_equal(stored["masks"], segment_partition(gray))
        np.testing.assert_array_equal(stored["gray_values"], np.unique(gray))
        predictor = RobustPredictor(model)
        predictor.set_image(image)
        features = np.load(tmp_path / "out" / f"{name}.features.npz")
        np.testing.assert_allclose(features["embedding"], predictor.features[0].numpy(), atol=1e-5)
        np.testing.assert_allclose(features["early_feature"], predictor.early_features[0].numpy(), atol=1e-5)
    assert len(np.unique(iio.imread(tmp_path / "out" / "a.gray.png"))) > 1  # the test saw real masks
    manifest = json.loads((tmp_path / "out" / "prior.json").read_text())
    assert manifest["task"] == "deblur" and manifest["generator"]["points_per_side"] == 4
    assert manifest["generator"]["box_nms_thresh"] == 0.7 and manifest["generator"]["crop_n_layers"] == 0


def test_prior_resumes_and_refuses_other_settings(tmp_path, images, checkpoint):
    out = tmp_path / "out"
    assert _prior("--task", "dehaze", images, "-o", out, "--checkpoint", checkpoint, *GENERATOR).exit_code == 0
    assert not list(out.rglob("*.segments.npz")) and not list(out.rglob("*.features.npz"))
    kept = (out / "sub" / "b.gray.png").stat().st_mtime_ns
    (out / "a.gray.png").unlink()
    result = _prior("--task", "dehaze", images, "-o", out, "--checkpoint", checkpoint, *GENERATOR)
    assert result.exit_code == 0 and "1 written, 1 already there" in result.output
    assert (out / "a.gray.png").is_file() and (out / "sub" / "b.gray.png").stat().st_mtime_ns == kept
    result = _prior("--task", "dehaze", images, "-o", out, "--checkpoint", checkpoint, "--mode", "sam", *GENERATOR)
    assert result.exit_code == 2 and "prior.json" in result.output and "mode" in result.output


def test_prior_errors(tmp_path, images, checkpoint, monkeypatch):
    monkeypatch.setattr("robustsam_cli.defaults.default_checkpoint", lambda: None)
    result = _prior("--task", "dehaze", images, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "no built-in model: pass --checkpoint" in result.output
    assert not (tmp_path / "out").exists()
    (images / "broken.png").write_bytes(b"not an image")
    result = _prior("--task", "deblur", images, "-o", tmp_path / "out", "--checkpoint", checkpoint, *GENERATOR)
    lines = result.output.splitlines()  # the image fails alone: its line, the others written, exit 1
    assert result.exit_code == 1 and any(line.startswith("Error: ") and "broken.png: not a readable image" in line for line in lines)
    assert lines[-1].startswith("Failed: 1 of 3 images")
    assert (tmp_path / "out" / "a.gray.png").is_file() and not (tmp_path / "out" / "broken.gray.png").exists()
    assert not [p for p in (tmp_path / "out").rglob("*") if ".tmp" in p.name]
    result = _prior("--task", "deblur", tmp_path / "missing.png", "-o", tmp_path / "out", "--checkpoint", checkpoint)
    assert result.exit_code == 2 and "missing.png: no such file or folder" in result.output
