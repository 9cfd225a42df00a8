"""Training losses: segmentation (focal, dice), the paper's and the released code's teacher-student losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.model.decoder import DecoderOutput


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss averaged over pixels; logits and target (N, h, w), target in {0, 1}."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    weight = alpha * target + (1 - alpha) * (1 - target)
    return (weight * ce * (1 - p_t) ** gamma).flatten(1).mean(1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice per mask, (N,); logits and target (N, h, w)."""
    prob = logits.sigmoid().flatten(1)
    target = target.flatten(1)
    return 1 - (2 * (prob * target).sum(1) + 1) / (prob.sum(1) + target.sum(1) + 1)


def segmentation_losses(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(focal, dice), each (N,), of logits (N, h, w) against target masks (N, H, W) area-resized to (h, w)."""
    if target.shape[-2:] != logits.shape[-2:]:
        target = F.interpolate(target[:, None], size=logits.shape[-2:], mode="area")[:, 0]
    target = (target >= 0.5).to(logits.dtype)
    return focal_loss(logits, target), dice_loss(logits, target)


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU (N,) of thresholded logits (N, h, w) with target masks (N, H, W), at the target's size."""
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits[:, None], size=target.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    pred, gt = logits > 0, target >= 0.5
    union = (pred | gt).flatten(1).sum(1)
    ratio = (pred & gt).flatten(1).sum(1) / union.clamp(min=1)
    return torch.where(union > 0, ratio, torch.ones_like(ratio))


def robust_losses(
    student: DecoderOutput,
    teacher: DecoderOutput,
    student_feature: torch.Tensor,
    teacher_feature: torch.Tensor,
    target: torch.Tensor,
    kind: str,
    weights: dict[str, float],
) -> dict[str, torch.Tensor]:
    """Every loss component (scalars) and their weighted sum under "total".

    student: robust path on the degraded image; teacher: clear path on the clear image (no gradients);
    *_feature: the image features R (B, D/8, h, w); target: (N, H, W) ground truth for token 0.
    kind "paper": L_MFC (R and X) + token * L_TC (refined tokens vs teacher tokens) + seg * (Dice + focal * Focal).
    kind "published": focal * Focal + dice * Dice + token * MSE(transformer tokens) + feature * MSE(X).
    """
    focal, dice = (loss.mean() for loss in segmentation_losses(student.masks[:, 0].float(), target))
    if kind == "paper":
        mfc = F.mse_loss(student_feature.float(), teacher_feature.float()) + F.mse_loss(
            student.features.float(), teacher.features.float()
        )
        tc = F.mse_loss(student.refined_tokens.float(), teacher.mask_tokens.float())
        seg = dice + weights["focal"] * focal
        total = weights["feature"] * mfc + weights["token"] * tc + weights["seg"] * seg
        return {"total": total, "mfc": mfc, "tc": tc, "focal": focal, "dice": dice}
    token = F.mse_loss(student.mask_tokens.float(), teacher.mask_tokens.float())
    feature = F.mse_loss(student.features.float(), teacher.features.float())
    total = weights["focal"] * focal + weights["dice"] * dice + weights["token"] * token + weights["feature"] * feature
    return {"total": total, "focal": focal, "dice": dice, "token": token, "feature": feature}


def base_losses(output: DecoderOutput, target: torch.Tensor, weights: dict[str, float]) -> dict[str, torch.Tensor]:
    """Stage "base" (SAM itself, SAM path): focal * Focal + dice * Dice on the single-mask token plus
    the best of the three multimask tokens (SAM's ambiguity-aware loss), and MSE of the IoU predictions."""
    n = target.shape[0]
    logits = output.masks.float()
    focal, dice = segmentation_losses(logits.flatten(0, 1), target.repeat_interleave(logits.shape[1], 0))
    per_token = (weights["focal"] * focal + weights["dice"] * dice).view(n, -1)
    best = per_token[:, 1:].argmin(1)
    seg = per_token[:, 0] + per_token[:, 1:].gather(1, best[:, None])[:, 0]
    with torch.no_grad():
        actual_iou = mask_iou(logits.flatten(0, 1), target.repeat_interleave(logits.shape[1], 0)).view(n, -1)
    iou = F.mse_loss(output.iou.float(), actual_iou)
    total = seg.mean() + weights["iou"] * iou
    return {
        "total": total,
        "focal": focal.view(n, -1)[:, 0].mean(),
        "dice": dice.view(n, -1)[:, 0].mean(),
        "multimask": per_token[:, 1:].gather(1, best[:, None]).mean(),
        "iou": iou,
    }
