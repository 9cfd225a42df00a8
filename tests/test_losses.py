"""Training losses against values worked out by hand on 2x2 masks.

The logits 0, ln 3 and -ln 3 have sigmoids 1/2, 3/4 and 1/4, so every focal and dice term below is
a closed form in ln 2, ln 4 and ln(4/3); see each constant's comment.
"""

from __future__ import annotations

import math

import pytest
import torch

from core import DecoderOutput
from train.config import TrainConfig
from train.losses import base_losses, dice_loss, focal_loss, mask_iou, robust_losses, segmentation_losses

LN3 = math.log(3)
# Probabilities [[1/2, 3/4], [3/4, 1/4]] against the target [[1, 1], [0, 0]].
LOGITS = torch.tensor([[[0.0, LN3], [LN3, -LN3]]])
TARGET = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
# Per pixel alpha_t * CE * (1 - p_t)^2 with alpha_t = 1/4 on the object, 3/4 off it:
# 1/4 ln2 (1/2)^2, 1/4 ln(4/3) (1/4)^2, 3/4 ln4 (3/4)^2, 3/4 ln(4/3) (1/4)^2; their mean.
FOCAL = (math.log(2) / 16 + math.log(4 / 3) / 64 + 27 * math.log(4) / 64 + 3 * math.log(4 / 3) / 64) / 4
# 1 - (2 * 5/4 + 1) / (9/4 + 2 + 1).
DICE = 1 / 3
# Logits matching the target (3/4 on, 1/4 off) and the opposite (1/4 on, 3/4 off).
MATCHING = torch.tensor([[[LN3, LN3], [-LN3, -LN3]]])
OPPOSITE = -MATCHING
ZEROS = torch.zeros(1, 2, 2)
FOCAL_MATCHING, DICE_MATCHING = math.log(4 / 3) / 32, 1 - 4 / 5
FOCAL_OPPOSITE, DICE_OPPOSITE = 9 * math.log(4) / 32, 1 - 2 / 5
FOCAL_ZEROS, DICE_ZEROS = math.log(2) / 8, 1 - 3 / 5
# The released code's weights (spec 5) and the paper's defaults here (L_MFC + L_TC + L_Seg, focal 20).
PUBLISHED_WEIGHTS = {"focal": 20.0, "dice": 1.0, "token": 2.0, "feature": 100.0}
PAPER_WEIGHTS = {"focal": 20.0, "token": 1.0, "feature": 1.0, "seg": 1.0}


def close(actual: torch.Tensor, expected: float) -> bool:
    return math.isclose(float(actual), expected, rel_tol=1e-6, abs_tol=1e-7)


def test_focal_loss_by_hand() -> None:
    assert close(focal_loss(LOGITS, TARGET), FOCAL)
    assert close(focal_loss(MATCHING, TARGET), FOCAL_MATCHING)
    assert close(focal_loss(ZEROS, TARGET), FOCAL_ZEROS)
    # alpha and gamma are used as given: alpha 1/2, gamma 0 is half the mean cross-entropy.
    ce = (math.log(2) + math.log(4 / 3) + math.log(4) + math.log(4 / 3)) / 4
    assert close(focal_loss(LOGITS, TARGET, alpha=0.5, gamma=0.0), ce / 2)


def test_dice_loss_by_hand() -> None:
    assert close(dice_loss(LOGITS, TARGET), DICE)
    assert close(dice_loss(OPPOSITE, TARGET), DICE_OPPOSITE)
    # The +1 smoothing: an empty prediction of an empty target costs nothing.
    assert close(dice_loss(torch.full((1, 2, 2), -1e4), torch.zeros(1, 2, 2)), 0.0)


def test_segmentation_losses_area_resize_the_target() -> None:
    """A 4x4 target averaged over 2x2 cells and kept where at least half is object: TARGET again."""
    target = torch.tensor([[[1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    focal, dice = segmentation_losses(LOGITS, target)
    assert focal.shape == dice.shape == (1,)
    assert close(focal, FOCAL) and close(dice, DICE)


def test_mask_iou_by_hand() -> None:
    # logits > 0 predicts [[0, 1], [1, 0]]: one shared pixel of three.
    assert close(mask_iou(LOGITS, TARGET), 1 / 3)
    assert close(mask_iou(torch.full((1, 2, 2), -1.0), torch.zeros(1, 2, 2)), 1.0)  # both empty


def test_published_weights_are_the_released_codes() -> None:
    weights = TrainConfig(data="synthetic:1", output="run", loss="published").resolved_weights()
    assert {key: weights[key] for key in PUBLISHED_WEIGHTS} == PUBLISHED_WEIGHTS
    weights = TrainConfig(data="synthetic:1", output="run", loss="paper").resolved_weights()
    assert {key: weights[key] for key in PAPER_WEIGHTS} == PAPER_WEIGHTS


def decoder_output(token0: torch.Tensor, tokens: float, features: float, refined: float = 0.0) -> DecoderOutput:
    """One prompt: token 0's logits `token0`, the others zero; constant tokens and features."""
    masks = torch.cat([token0[:, None], torch.zeros(1, 3, 2, 2)], dim=1)
    return DecoderOutput(
        masks=masks,
        iou=torch.zeros(1, 4),
        mask_tokens=torch.full((1, 4, 8), tokens),
        features=torch.full((1, 4, 2, 2), features),
        refined_tokens=torch.full((1, 4, 8), refined),
    )


# Student against teacher: mask tokens differ by 1/2 (MSE 1/4), refined tokens by 1/4 (1/16),
# mask features X by 1/8 (1/64), image features R by 1/16 (1/256).
STUDENT = decoder_output(LOGITS[0:1], tokens=0.5, features=0.125, refined=0.25)
TEACHER = decoder_output(ZEROS, tokens=0.0, features=0.0)
STUDENT_R, TEACHER_R = torch.full((1, 4, 2, 2), 0.0625), torch.zeros(1, 4, 2, 2)


@pytest.mark.parametrize(
    "weights", [PUBLISHED_WEIGHTS, {"focal": 3.0, "dice": 5.0, "token": 7.0, "feature": 11.0}], ids=["published", "distinct"]
)
def test_published_loss_sum(weights: dict[str, float]) -> None:
    losses = robust_losses(STUDENT, TEACHER, STUDENT_R, TEACHER_R, TARGET, "published", weights)
    parts = {"focal": FOCAL, "dice": DICE, "token": 1 / 4, "feature": 1 / 64}
    for name, value in parts.items():
        assert close(losses[name], value), name
    assert close(losses["total"], sum(weights[name] * value for name, value in parts.items()))


@pytest.mark.parametrize("weights", [PAPER_WEIGHTS, {"focal": 3.0, "token": 5.0, "feature": 7.0, "seg": 11.0}], ids=["paper", "distinct"])
def test_paper_loss_sum(weights: dict[str, float]) -> None:
    """L = feature * L_MFC + token * L_TC + seg * (Dice + focal * Focal)."""
    losses = robust_losses(STUDENT, TEACHER, STUDENT_R, TEACHER_R, TARGET, "paper", weights)
    mfc, tc = 1 / 256 + 1 / 64, 1 / 16  # R and X; refined tokens against the teacher's mask tokens
    assert close(losses["mfc"], mfc) and close(losses["tc"], tc)
    assert close(losses["focal"], FOCAL) and close(losses["dice"], DICE)
    expected = weights["feature"] * mfc + weights["token"] * tc + weights["seg"] * (DICE + weights["focal"] * FOCAL)
    assert close(losses["total"], expected)


def test_base_loss_sum() -> None:
    """Token 0's loss plus the best multimask token's, and the IoU head's MSE against the real IoUs."""
    masks = torch.cat([LOGITS, ZEROS, MATCHING, OPPOSITE])[None]
    output = DecoderOutput(masks=masks, iou=torch.full((1, 4), 0.5), mask_tokens=torch.zeros(1, 4, 8))
    weights = {"focal": 20.0, "dice": 1.0, "iou": 3.0}
    losses = base_losses(output, TARGET, weights)
    per_token = [20 * focal + dice for focal, dice in
                 [(FOCAL, DICE), (FOCAL_ZEROS, DICE_ZEROS), (FOCAL_MATCHING, DICE_MATCHING), (FOCAL_OPPOSITE, DICE_OPPOSITE)]]
    assert min(per_token[1:]) == per_token[2]
    # Real IoUs of logits > 0: 1/3, 0 (nothing predicted), 1, 0.
    iou = ((0.5 - 1 / 3) ** 2 + 0.5**2 + 0.5**2 + 0.5**2) / 4
    assert close(losses["focal"], FOCAL) and close(losses["dice"], DICE)
    assert close(losses["multimask"], per_token[2])
    assert close(losses["iou"], iou)
    assert close(losses["total"], per_token[0] + per_token[2] + 3 * iou)
