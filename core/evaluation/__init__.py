"""Measuring masks: IoU, Dice, boundary IoU, COCO AP, and the published evaluation prompts."""

from .metrics import (
    ApInstance,
    batch_boundary_iou,
    batch_dice,
    batch_iou,
    batch_pixel_accuracy,
    boundary_iou,
    dice,
    encode_rle,
    iou,
    mask_ap,
    pixel_accuracy,
)
from .prompt_sampling import ObjectPrompt, PromptBook, sample_prompts

__all__ = [
    "ApInstance",
    "ObjectPrompt",
    "PromptBook",
    "batch_boundary_iou",
    "batch_dice",
    "batch_iou",
    "batch_pixel_accuracy",
    "boundary_iou",
    "dice",
    "encode_rle",
    "iou",
    "mask_ap",
    "pixel_accuracy",
    "sample_prompts",
]
