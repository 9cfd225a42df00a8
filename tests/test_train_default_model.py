"""The shipped default model (scripts/build_default_model.py): loads, segments held-out scenes, and its
robust modules beat its own SAM path on degraded held-out scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core import RobustPredictor, build_robustsam
from core.evaluation.metrics import iou
from core.evaluation.prompt_sampling import mask_box
from train.data import VALIDATION_FIRST_SEED, open_dataset, validation_batches
from train.validate import validation_iou

DEFAULT = Path(__file__).resolve().parents[1] / "core" / "assets" / "robustsam_default.pth"
# Scenes of the photographs kept out of training, at seeds training never draws.
HELD_OUT = "photos:{}:held_out"
# Measured on the shipped model: box-prompt IoU over every object of 24 held-out photo scenes is 0.553;
# an untrained model scores far below the bound.
MIN_CLEAR_BOX_IOU = 0.45
# The paper's claim in miniature. Measured on these 90 scenes, degraded: box robust 0.709 vs SAM 0.701
# (+0.008), 3 points 0.621 vs 0.606 (+0.015); on 300 held-out scenes per kind (build script) +0.007 to
# +0.032. The tiny robust path starts as SAM's (scripts/build_default_model.py, warm_start), so the gain is small.
MIN_ROBUST_GAIN = 0.005


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    return build_robustsam(None, DEFAULT)


def test_default_checkpoint_is_a_small_full_float32_state_dict_with_generator_settings(model):
    stored = torch.load(DEFAULT, weights_only=True)
    assert set(stored) == {"model", "amg_defaults"}
    assert set(stored["amg_defaults"]) <= {"points_per_side", "pred_iou_thresh", "stability_score_thresh", "box_nms_thresh",
                                           "min_mask_region_area"}
    state = stored["model"]
    assert model.model_type == "vit_micro_p8"
    assert all(value.dtype in (torch.float32, torch.int64) for value in state.values())
    assert set(state) == set(model.state_dict())
    assert DEFAULT.stat().st_size < 10 * 2**20


def test_default_model_segments_held_out_scenes_from_boxes(model):
    predictor = RobustPredictor(model)
    scores = []
    for seed in range(24):
        scene = open_dataset(HELD_OUT.format(24), split="", image_dir=None, size=128, first_seed=VALIDATION_FIRST_SEED)[seed]
        predictor.set_image(scene.image)
        for mask in scene.masks:
            predicted, _, _ = predictor.predict(box=mask_box(mask), multimask_output=False)
            scores.append(iou(predicted[0], mask))
    assert np.mean(scores) > MIN_CLEAR_BOX_IOU


@pytest.mark.parametrize("prompt", ["box", "points"])
def test_robust_path_beats_sam_path_on_degraded_held_out_scenes(model, prompt):
    samples = open_dataset(HELD_OUT.format(90), split="", image_dir=None, size=128, first_seed=VALIDATION_FIRST_SEED)
    batches = validation_batches(samples, count=90, batch_size=30, seed=5, size=128, prompt=prompt, num_points=3,
                                 level=3, device=torch.device("cpu"))
    scores = validation_iou(model, batches)
    assert scores["robust/degraded"] > scores["sam/degraded"] + MIN_ROBUST_GAIN


def test_commands_use_the_built_in_model_and_say_so_once(tmp_path):
    from click.testing import CliRunner

    from core.model.default_model import DEFAULT_CHECKPOINT, DEFAULT_NOTICE
    from robustsam_cli.main import cli

    examples = Path(__file__).resolve().parents[1] / "examples"
    assert DEFAULT_CHECKPOINT == DEFAULT
    result = CliRunner().invoke(cli, ["segment", str(examples / "images"), "--prompts", str(examples / "boxes.json"), "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert " ".join(result.output.split()).count(DEFAULT_NOTICE) == 1
    assert len(list(tmp_path.glob("*/*.png"))) == 16
