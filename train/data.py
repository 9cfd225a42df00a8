"""Training data: the dataset readers behind `--data`, and seeded batches of images, masks and prompts.

Every random choice of a sample (its prompt points, its degradation and the degradation's parameters)
is a pure function of (seed, epoch, sample index), so a run gives the same batches on any number of
processes and after a resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core.data.datasets import CLEAR, CocoInstancesDataset, MaskFolderDataset, RobustSegSplit, Sample, SampleReader
from core.data.photo_scenes import PHOTO_SPLITS, PhotoSceneDataset
from core.data.scenes import SCENE_STYLES, SceneDataset
from core.degradations import DEGRADATIONS, PUBLISHED, degrade
from core.errors import InputError
from core.evaluation.prompt_sampling import mask_box, sample_points

SYNTHETIC = "synthetic"
PHOTOS = "photos"
# Validation scenes start far from any training seed so the two sets never share a scene.
VALIDATION_FIRST_SEED = 1_000_000
# The epoch number that seeds validation prompts; no training run reaches it.
VALIDATION_EPOCH = 1_000_000


def open_dataset(spec: str, *, split: str, image_dir: Optional[str], size: int, first_seed: int = 0) -> SampleReader:
    """The reader for a `--data` value.

    `synthetic:N[:style]`: N seeded scenes of `size` px; `photos:N[:split]`: N seeded scenes textured from
    the installed sample photographs (split train or held_out); a `.json` file: COCO instances with images in
    `image_dir`; a folder holding `<split>/clear/`: the Robust-Seg layout (clear images); a folder holding
    `images/` and `masks/`: images with mask PNGs.
    """
    if spec.startswith(PHOTOS + ":"):
        parts = spec.split(":")
        photo_split = parts[2] if len(parts) > 2 else "train"
        if len(parts) > 3 or not parts[1].isdigit() or int(parts[1]) < 1 or photo_split not in PHOTO_SPLITS:
            raise InputError(f"{spec}: expected photos:N or photos:N:SPLIT (N >= 1, SPLIT one of {', '.join(PHOTO_SPLITS)})")
        return PhotoSceneDataset(int(parts[1]), size=size, split=photo_split, first_seed=first_seed)
    if spec.startswith(SYNTHETIC + ":"):
        parts = spec.split(":")
        style = parts[2] if len(parts) > 2 else "geometric"
        if len(parts) > 3 or not parts[1].isdigit() or int(parts[1]) < 1 or style not in SCENE_STYLES:
            raise InputError(
                f"{spec}: expected synthetic:N or synthetic:N:STYLE (N >= 1, STYLE one of {', '.join(SCENE_STYLES)})"
            )
        return SceneDataset(int(parts[1]), size=size, style=style, first_seed=first_seed)
    path = Path(spec)
    if path.suffix.lower() == ".json":
        if image_dir is None:
            raise InputError(f"{spec}: a COCO annotation file needs --image-dir")
        return CocoInstancesDataset(image_dir, path)
    if (path / split / CLEAR).is_dir():
        return RobustSegSplit(path, split)
    if (path / "images").is_dir() and (path / "masks").is_dir():
        return MaskFolderDataset(path / "images", path / "masks")
    raise InputError(
        f"{spec}: not a dataset (want synthetic:N, photos:N, a COCO .json, a Robust-Seg root with {split}/clear/, "
        "or a folder with images/ and masks/)"
    )


class OfflinePairs:
    """Robust-Seg pairs read from disk: sample i is degraded by folder `kinds[i % len(kinds)]`."""

    def __init__(self, root: str, split: str) -> None:
        self.kinds = [CLEAR] + RobustSegSplit.degradations(root, split)
        self.splits = {kind: RobustSegSplit(root, split, kind) for kind in self.kinds}
        self.count = len(self.splits[CLEAR])

    def __len__(self) -> int:
        return self.count * len(self.kinds)

    def __getitem__(self, index: int) -> Sample:
        return self.splits[self.kinds[index % len(self.kinds)]][index // len(self.kinds)]


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample in one epoch."""
    return np.random.default_rng([seed, epoch, index])


def _resize_square(array: np.ndarray, size: int, mode: str) -> torch.Tensor:
    """(H, W, C) or (H, W) -> (C, size, size) float tensor (images resized to a square, as published)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array)).float()
    tensor = tensor.permute(2, 0, 1) if tensor.ndim == 3 else tensor[None]
    if tensor.shape[-2:] == (size, size):
        return tensor
    kwargs = {"antialias": True, "align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(tensor[None], size=(size, size), mode=mode, **kwargs)[0]


@dataclass
class Batch:
    """B images and N >= B prompt sets on them, all on one device.

    clear, degraded: (B, 3, S, S) float in [0, 1]; masks: (N, S, S) float ground truth, one object per
    prompt set (each image's largest first); points: (N, P, 2) xy pixel coordinates or None; boxes:
    (N, 4) xyxy or None; image_index: (N,) the image of each prompt set; kinds: the degradation of each image.
    """

    clear: torch.Tensor
    degraded: torch.Tensor
    masks: torch.Tensor
    points: Optional[torch.Tensor]
    boxes: Optional[torch.Tensor]
    kinds: list[str]
    image_index: Optional[torch.Tensor] = None


def batch_prompt(prompt: str, seed: int, step: int) -> str:
    """The prompt kind of one optimizer step: `prompt` itself, or for "mixed" a seeded coin flip."""
    if prompt != "mixed":
        return prompt
    return "points" if np.random.default_rng([seed, step, 7]).random() < 0.5 else "box"


def make_batch(
    samples: Sequence[Sample],
    indices: Sequence[int],
    *,
    epoch: int,
    seed: int,
    size: int,
    prompt: str,
    num_points: int,
    degrade_online: bool,
    level: int,
    device: torch.device,
    masks_per_image: int = 1,
) -> Batch:
    """Resized images, up to `masks_per_image` of their masks (the largest, then others drawn at
    random) with a prompt set each; degraded on `device` when `degrade_online`.

    Online degradation draws one of DEGRADATIONS (the 15 types and identity) uniformly per sample.
    Without it, `Sample.image` is already the degraded image (offline pairs) and `Sample.clear` the clear one.
    """
    clears, degraded, masks, points, boxes, kinds, generators, image_index = [], [], [], [], [], [], [], []
    names = list(DEGRADATIONS)

    def add_object(mask_array: np.ndarray, rng: np.random.Generator, image: int) -> None:
        coverage = _resize_square(mask_array.astype(np.float32), size, "bilinear")[0]
        # A sliver can vanish in resizing: then keep its best-covered pixels.
        mask = coverage >= 0.5 if bool((coverage >= 0.5).any()) else coverage == coverage.max()
        masks.append(mask.float())
        mask_np = mask.numpy()
        points.append(torch.from_numpy(sample_points(mask_np, num_points, rng)).float() + 0.5)
        boxes.append(torch.from_numpy(mask_box(mask_np)).float() + torch.tensor([0.0, 0.0, 1.0, 1.0]))
        image_index.append(image)

    for image, (sample, index) in enumerate(zip(samples, indices)):
        rng = sample_rng(seed, epoch, index)
        clear = sample.image if sample.clear is None else sample.clear
        clears.append(_resize_square(clear, size, "bilinear") / 255)
        degraded.append(_resize_square(sample.image, size, "bilinear") / 255)
        areas = sample.masks.reshape(len(sample.masks), -1).sum(1)
        largest = int(np.argmax(areas))
        add_object(sample.masks[largest], rng, image)
        if degrade_online:
            kinds.append(names[int(rng.integers(len(names)))])
        else:
            kinds.append("identity" if sample.clear is None else "offline")
        generators.append(torch.Generator().manual_seed(int(rng.integers(2**62))))
        # Further objects draw after everything above, so one mask per image stays the published batch.
        others = np.flatnonzero((np.arange(len(areas)) != largest) & (areas > 0))
        extra = min(masks_per_image - 1, len(others))
        for other in rng.choice(others, size=extra, replace=False) if extra > 0 else ():
            add_object(sample.masks[int(other)], rng, image)
    clear_batch = torch.stack(clears).clamp(0, 1).to(device)
    degraded_batch = torch.stack(degraded).clamp(0, 1).to(device)
    if degrade_online:
        degraded_batch = degrade(clear_batch, kinds, level=level, generator=generators)
    use_points = prompt == "points"
    return Batch(
        clear=clear_batch,
        degraded=degraded_batch,
        masks=torch.stack(masks).to(device),
        points=torch.stack(points).to(device) if use_points else None,
        boxes=None if use_points else torch.stack(boxes).to(device),
        kinds=kinds,
        image_index=torch.tensor(image_index, dtype=torch.int64, device=device),
    )


def validation_batches(
    samples: SampleReader,
    *,
    count: int,
    batch_size: int,
    seed: int,
    size: int,
    prompt: str,
    num_points: int,
    level: int,
    device: torch.device,
) -> list[Batch]:
    """A fixed validation set: the first `count` samples, sample i degraded by published type i mod 15."""
    batches = []
    total = min(count, len(samples))
    for start in range(0, total, batch_size):
        indices = list(range(start, min(start + batch_size, total)))
        chunk = [samples[i] for i in indices]
        batch = make_batch(
            chunk, indices, epoch=VALIDATION_EPOCH, seed=seed, size=size,
            prompt="points" if prompt == "points" else "box", num_points=num_points,
            degrade_online=False, level=level, device=device,
        )
        if all(sample.clear is None for sample in chunk):
            kinds = [PUBLISHED[i % len(PUBLISHED)] for i in indices]
            generators = [torch.Generator().manual_seed(seed * 100_003 + i) for i in indices]
            batch.degraded = degrade(batch.clear, kinds, level=level, generator=generators)
            batch.kinds = kinds
        batches.append(batch)
    return batches
