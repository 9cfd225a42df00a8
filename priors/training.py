"""Training, evaluation and inference loops for the restoration networks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from core.errors import InputError, OnFailure, per_image

from .data import PairedImage
from .metrics import psnr, ssim
from .restorer import Restorer


class PairedCrops(Dataset):
    """Random crops of paired images with random flips and 90-degree rotations (SAM-Deblur's recipe).

    Item: degraded (3, c, c) float32 in [0, 1], clean (3, c, c), gray (c, c) uint8 (zeros without a prior).
    """

    def __init__(self, pairs: Sequence[PairedImage], crop: int, seed: int = 0) -> None:
        self.pairs, self.crop, self.seed = list(pairs), crop, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pair = self.pairs[index]
        degraded, clean, gray = pair.load()
        if clean is None:
            raise InputError(f"{pair.name}: training needs a clean image")
        height, width = degraded.shape[:2]
        if min(height, width) < self.crop:
            raise InputError(f"{pair.name}: {width}x{height} is smaller than the {self.crop} px training crop")
        if gray is None:
            gray = np.zeros((height, width), dtype=np.uint8)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        top, left = rng.integers(0, height - self.crop + 1), rng.integers(0, width - self.crop + 1)
        flip, turns = rng.integers(0, 2), rng.integers(0, 4)
        views = []
        for array in (degraded, clean, gray):
            array = array[top : top + self.crop, left : left + self.crop]
            array = np.rot90(array[:, ::-1] if flip else array, turns)
            views.append(torch.from_numpy(np.ascontiguousarray(array)))
        degraded_t, clean_t = (v.permute(2, 0, 1).float() / 255.0 for v in views[:2])
        return degraded_t, clean_t, views[2]


def psnr_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """NAFNet's PSNR loss: mean over images of 10 log10(MSE + 1e-8), i.e. minus the PSNR in dB."""
    mse = (output - target).pow(2).mean(dim=(1, 2, 3))
    return (10.0 / math.log(10.0)) * torch.log(mse + 1e-8).mean()


@dataclass
class TrainSettings:
    """Optimiser and schedule; defaults are SAM-Deblur's (AdamW, cosine to 1e-7, batch 32, 256 crops)."""

    steps: int = 200_000
    batch_size: int = 32
    crop: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.9)
    min_lr: float = 1e-7
    seed: int = 0
    workers: int = 0


def train_restorer(
    restorer: Restorer,
    pairs: Sequence[PairedImage],
    settings: TrainSettings,
    device: torch.device = torch.device("cpu"),
    on_step: Optional[Callable[[int, float], None]] = None,
) -> list[float]:
    """Trains `restorer` in place with the PSNR loss; returns the loss of every step."""
    torch.manual_seed(settings.seed)
    restorer.to(device).train()
    dataset = PairedCrops(pairs, settings.crop, settings.seed)
    batch_size = min(settings.batch_size, len(dataset))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=settings.workers,
                        generator=torch.Generator().manual_seed(settings.seed))
    optimizer = torch.optim.AdamW(restorer.parameters(), lr=settings.lr, weight_decay=settings.weight_decay, betas=settings.betas)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.steps, eta_min=settings.min_lr)
    losses: list[float] = []
    while len(losses) < settings.steps:
        for degraded, clean, gray in loader:
            degraded, clean, gray = degraded.to(device), clean.to(device), gray.to(device)
            loss = psnr_loss(restorer(degraded, gray if restorer.use_prior else None), clean)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            if on_step is not None:
                on_step(len(losses), losses[-1])
            if len(losses) == settings.steps:
                break
        dataset.epoch += 1
    restorer.eval()
    return losses


@torch.inference_mode()
def restore_image(restorer: Restorer, image: np.ndarray, gray: Optional[np.ndarray] = None) -> np.ndarray:
    """(H, W, 3) uint8 degraded image (+ (H, W) uint8 gray map) -> (H, W, 3) uint8 restored image."""
    device = next(restorer.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().to(device) / 255.0
    g = torch.from_numpy(np.ascontiguousarray(gray))[None].to(device) if restorer.use_prior else None
    out = restorer(x, g)[0].clamp(0, 1)
    return (out * 255.0).round().byte().permute(1, 2, 0).cpu().numpy()


def evaluate_restorer(
    restorer: Restorer,
    pairs: Sequence[PairedImage],
    on_image: Optional[Callable[[dict], None]] = None,
    on_failure: OnFailure = None,
) -> list[dict]:
    """Per image: name, psnr, ssim of the restored image and input_psnr, input_ssim of the degraded one.
    An unreadable image goes to `on_failure` and is left out (without it, InputError is raised);
    `on_image(row)` follows each image, `row` None for one that failed."""
    rows = []
    for pair in pairs:
        row = None
        with per_image(on_failure):
            degraded, clean, gray = pair.load()
            if clean is None:
                raise InputError(f"{pair.name}: evaluation needs a clean image")
            restored = restore_image(restorer, degraded, gray)
            row = {
                "name": pair.name,
                "psnr": psnr(restored, clean),
                "ssim": ssim(restored, clean),
                "input_psnr": psnr(degraded, clean),
                "input_ssim": ssim(degraded, clean),
            }
            rows.append(row)
        if on_image is not None:
            on_image(row)
    return rows


def mean_scores(rows: Sequence[dict]) -> dict[str, float]:
    """The per-image mean of every score in `rows`."""
    keys = [k for k in rows[0] if k != "name"] if rows else []
    return {k: float(np.mean([row[k] for row in rows])) for k in keys}
