"""GleSAM's two-stage training on a frozen SAM (released code: `train_glesam_denoising_unet.py`,
`train_glesam_decoder.py`, run by `train_scripts/*.sh`, whose flags are the recipe).

stage "unet": the enhancer's trainable weights (LoRA rank 8, alpha 8 on a pretrained SD U-Net; every
U-Net weight for a small U-Net from scratch, which has no pretrained base to keep) learn to map the
LQSeg-degraded image's embedding to the clear image's in one step at timestep 1. The released objective
(`objective="released"`, train.glesam_guidance): each iteration the guidance update trains a "fake
score" U-Net (its own LoRA) to denoise the generator's outputs plus 1e-2 x a diffusion-GAN classifier on
its bottleneck; every 5th iteration (0, 5, 10, ...) the generator updates on MSE between x0 and
feature_weight * HQ embedding (the released `loss_spatial`, weight 1) + distribution matching against
the frozen "real score" U-Net (weight 1) + 5e-3 x the GAN term. AdamW (lr 1e-4, weight decay 0.01) for
each, constant learning rate after a 500-iteration linear warmup (both schedules count iterations),
gradient norms clipped at 10. `objective="mse"` trains on the MSE alone, every iteration. Training
images (resized to 512, SAM upsamples them to its input) get LQSeg's training chain as the released
loader runs it, the rate drawn per sample from (1, 2, 3, 3, 4, 4, 4, 4).
stage "decoder": the enhancer frozen, SAM's mask decoder (all but its IoU head, as in the released
`SamJoint`) fine-tuned on enhanced embeddings of degraded images: Focal (gamma 2, alpha 0.25 on every
pixel) + Dice (smooth 1e-6), weights 1 and 1, on the low-res logits upsampled to the mask; Adam (lr
1e-4, weight decay 1e-5), StepLR(10 epochs), 6 epochs, point prompts.

Runs follow RobustSAM's rules (train.loop): one process or many under torchrun (DistributedDataParallel
over the trainable part), each rank's batches from DistributedSampler seeded by the run's seed, every
batch a pure function of (seed, epoch, index) and its LQSeg draw of (seed, step, rank); `log.jsonl`
lines, `checkpoint-NNNNNNN.pth` every `save_every` steps (iterations) and `final.pth`, all GleSAM
checkpoints for `robustsam segment/eval` that also carry the optimizers, schedulers, step and RNG state
(and the fake score's trained weights) for `--resume`.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.optimization import get_scheduler
from torch import nn

from core.degradations.lqseg import LQSEG_CHAINS, LQSEG_RATES, lqseg_training
from core.errors import InputError
from core.glesam import (
    PUBLISHED_FEATURE_WEIGHT,
    PUBLISHED_LORA,
    PUBLISHED_TIMESTEP,
    GleSam,
    LatentEnhancer,
    build_enhancer,
    checkpoint_dict,
    has_clip_context,
    load_glesam,
)
from core.model import RobustModulesUninitialized, build_robustsam, is_robust_key
from core.model.default_model import read_amg_defaults

from .config import JsonConfig
from .data import Batch, make_batch, open_dataset
from .glesam_guidance import DM_WEIGHT, GENERATOR_EVERY, GENERATOR_GAN_WEIGHT, Guidance
from .loop import StepReport, TrainingRun, read_training_checkpoint
from .step import prompt_embeddings

GLESAM_STAGES = ("unet", "decoder")
OBJECTIVES = ("released", "mse")
TEXT_CONTEXTS = ("clip", "zero")
GLESAM_IMAGE_SIZE = 512  # the released loader's `out_size`: images resized to 512 before degrading


@dataclass
class GleSamTrainConfig(JsonConfig):
    """One GleSAM run. `level` None draws LQSeg's training rates per sample, 1..3 fixes LQ-1..LQ-3;
    `lqseg_chain` "released" or "yaml" (core.degradations.lqseg); `unet` is a Stable Diffusion U-Net on
    disk (None: a small random U-Net of `width`), conditioned on CLIP's embedding of "" from its pipeline
    folder (`text_context` "clip") or, asked for explicitly, on a zero token ("zero"); `objective`
    "released" (MSE + distribution matching + GAN, with the guidance networks) or "mse"."""

    data: str
    output: str
    stage: str = "unet"
    sam_checkpoint: Optional[str] = None
    checkpoint: Optional[str] = None
    unet: Optional[str] = None
    width: int = 32
    lora_rank: int = PUBLISHED_LORA["rank"]
    lora_alpha: float = PUBLISHED_LORA["alpha"]
    feature_weight: float = PUBLISHED_FEATURE_WEIGHT
    timestep: int = PUBLISHED_TIMESTEP
    image_size: int = GLESAM_IMAGE_SIZE
    level: Optional[int] = None
    lqseg_chain: str = "released"
    objective: str = "released"
    text_context: str = "clip"
    prompt: str = "points"
    num_points: int = 3
    lr: float = 1e-4
    warmup: int = 500
    epochs: int = 6
    max_steps: Optional[int] = None
    batch_size: int = 2
    seed: int = 0
    save_every: int = 1000
    log_every: int = 10
    device: str = "auto"
    # what a launch config or checkpoint's "config" says, so that a torchrun worker runs the right trainer
    method: ClassVar[str] = "glesam"

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **asdict(self)}


def check_glesam_config(config: GleSamTrainConfig) -> None:
    """One InputError for the first bad setting."""
    if config.stage not in GLESAM_STAGES:
        raise InputError(f"--stage: GleSAM trains in stages {', '.join(GLESAM_STAGES)}, not {config.stage!r}")
    if config.stage == "decoder" and config.checkpoint is None:
        raise InputError("--checkpoint: stage decoder needs the GleSAM checkpoint of stage unet")
    if config.objective not in OBJECTIVES:
        raise InputError(f"objective: {', '.join(OBJECTIVES)}, not {config.objective!r}")
    if config.text_context not in TEXT_CONTEXTS:
        raise InputError(f"--text-context: {', '.join(TEXT_CONTEXTS)}, not {config.text_context!r}")
    if config.lqseg_chain not in LQSEG_CHAINS:
        raise InputError(f"--lqseg-chain: {', '.join(LQSEG_CHAINS)}, not {config.lqseg_chain!r}")
    if config.stage == "unet" and config.unet is not None and config.text_context == "clip" and not has_clip_context(config.unet):
        raise InputError(f"--unet {config.unet}: a bare U-Net has no CLIP context (GleSAM conditions on CLIP's embedding "
                         f"of \"\"): give the SD pipeline folder holding unet/, tokenizer/ and text_encoder/, or --text-context zero")
    if config.level is not None and config.level not in LQSEG_RATES:
        raise InputError(f"--level: LQSeg levels are 1..3, got {config.level}")
    if config.prompt not in ("points", "box"):
        raise InputError(f"--prompt: GleSAM trains with points or box prompts, not {config.prompt!r}")
    for name in ("batch_size", "epochs", "lora_rank", "num_points"):
        if getattr(config, name) < 1:
            raise InputError(f"--{name.replace('_', '-')}: must be at least 1")


def build_glesam(config: GleSamTrainConfig) -> GleSam:
    """Stage unet: SAM from `sam_checkpoint` plus a new enhancer; stage decoder: the stage-unet checkpoint."""
    torch.manual_seed(config.seed)
    if config.stage == "decoder":
        return load_glesam(config.checkpoint, unet=config.unet)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RobustModulesUninitialized)
        sam = build_robustsam(None, config.sam_checkpoint)
    enhancer = build_enhancer(sam, unet=config.unet, width=config.width, lora_rank=config.lora_rank,
                              lora_alpha=config.lora_alpha, feature_weight=config.feature_weight, timestep=config.timestep,
                              zero_context=config.text_context == "zero")
    if config.unet is None:
        enhancer.unet.requires_grad_(True)  # nothing pretrained to preserve: the whole small U-Net learns
    return GleSam(sam, enhancer)


def glesam_trainable(model: GleSam, stage: str) -> list[tuple[str, torch.nn.Parameter]]:
    """(name, parameter) pairs the stage updates; every other parameter is frozen."""
    model.requires_grad_(False)
    if stage == "unet":
        chosen = [(f"enhancer.{n}", p) for n, p in model.enhancer.named_parameters() if _unet_learns(n, model)]
    else:  # the released SamJoint trains every decoder parameter whose name lacks "iou"
        chosen = [(f"sam.{n}", p) for n, p in model.sam.named_parameters()
                  if n.startswith("mask_decoder.") and not is_robust_key(n) and "iou" not in n]
    for _, parameter in chosen:
        parameter.requires_grad_(True)
    return chosen


def glesam_mask_losses(logits: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """GleSAM's decoder losses (released `utils/loss.py`), scalars: logits (N, h, w) upsampled bilinearly
    to the masks (N, H, W) in {0, 1}; focal = mean of 0.25 (1 - p_t)^2 BCE over every pixel (alpha 0.25
    on both classes, unlike RetinaNet's), Dice = mean over masks of 1 - (2 I + 1e-6) / (P + T + 1e-6)."""
    logits = F.interpolate(logits[:, None], size=masks.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    bce = F.binary_cross_entropy_with_logits(logits, masks, reduction="none")
    focal = (0.25 * (1 - torch.exp(-bce)) ** 2 * bce).mean()
    prob = logits.sigmoid().flatten(1)
    target = masks.flatten(1)
    dice = 1 - (2 * (prob * target).sum(1) + 1e-6) / (prob.sum(1) + target.sum(1) + 1e-6)
    return focal, dice.mean()


def _unet_learns(name: str, model: GleSam) -> bool:
    return ".lora_" in name or getattr(model.enhancer, "train_base", False)


class GleSamStep(nn.Module):
    """The losses of one batch of a stage, as a module so that DistributedDataParallel can wrap it: clear
    and LQSeg-degraded images (B, 3, S, S) in [0, 1], masks (B, S, S), points (B, P, 2) or boxes (B, 4)
    -> {"loss": the optimised scalar, and its parts}."""

    def __init__(self, model: GleSam, stage: str, image_size: int) -> None:
        super().__init__()
        self.model = model
        self.stage = stage
        self.image_size = image_size

    def forward(self, clear: torch.Tensor, degraded: torch.Tensor, masks: torch.Tensor,
                points: Optional[torch.Tensor], boxes: Optional[torch.Tensor]) -> dict[str, torch.Tensor]:
        sam, enhancer = self.model.sam, self.model.enhancer
        low = self.model.encode(sam.normalize_images(degraded))
        if self.stage == "unet":
            high = self.model.encode(sam.normalize_images(clear))
            loss = F.mse_loss(enhancer.scaled_x0(low), high * enhancer.feature_weight)
            # what doing nothing would cost: the enhancer helps where mse < mse_input
            mse_input = F.mse_loss(low, high) * enhancer.feature_weight**2
            return {"loss": loss, "mse": loss, "mse_input": mse_input}
        with torch.no_grad():
            enhanced = enhancer(low)
        scale = sam.image_encoder.img_size / self.image_size
        logits = []
        for i in range(len(enhanced)):
            sparse, dense = prompt_embeddings(sam, None if points is None else points[i : i + 1],
                                              None if boxes is None else boxes[i : i + 1], scale)
            low_res, _ = sam.mask_decoder(enhanced[i : i + 1], sam.prompt_encoder.get_dense_pe(), sparse, dense,
                                          multimask_output=False, robust=False)
            logits.append(low_res[:, 0])
        focal, dice = glesam_mask_losses(torch.cat(logits), masks)
        return {"loss": focal + dice, "focal": focal, "dice": dice}


class GeneratorStep(nn.Module):
    """The generator update's objective of the released stage one, as a module so that
    DistributedDataParallel can wrap it: LQ and HQ embeddings (B, D, h, w) -> {"loss": MSE + DM_WEIGHT dm
    + GENERATOR_GAN_WEIGHT gen_gan, and its parts; "generated": the detached x0 for the guidance update}.
    The guidance networks are held outside the module tree: wrapping this syncs the generator's gradients only."""

    def __init__(self, enhancer: LatentEnhancer, guidance: Guidance) -> None:
        super().__init__()
        self.enhancer = enhancer
        self._guidance = (guidance,)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> dict[str, torch.Tensor]:
        guidance, weight = self._guidance[0], self.enhancer.feature_weight
        generated = self.enhancer.scaled_x0(low)
        mse = F.mse_loss(generated, high * weight)
        dm, gen_gan = guidance.distribution_matching(generated), guidance.generator_gan(generated)
        return {"loss": mse + DM_WEIGHT * dm + GENERATOR_GAN_WEIGHT * gen_gan, "mse": mse, "dm": dm, "gen_gan": gen_gan,
                "mse_input": F.mse_loss(low, high) * weight**2, "generated": generated.detach()}


GLESAM_CHECKPOINT_KEYS = ("glesam", "sam", "unet")
GUIDANCE_KEYS = ("guidance", "guidance_optimizer", "guidance_scheduler")


class GleSamTrainer(TrainingRun):
    """Runs one stage, alone or as one rank of a torchrun job; `run()` (train.loop) returns `final.pth`'s path."""

    def __init__(self, config: GleSamTrainConfig, resume: Optional[str] = None) -> None:
        check_glesam_config(config)
        # a bad file fails before anything is written
        saved = read_training_checkpoint(resume, GLESAM_CHECKPOINT_KEYS, "a GleSAM run") if resume is not None else None
        if saved is not None and saved.get("config", {}).get("stage") != config.stage:
            raise InputError(f"{resume}: not a checkpoint of GleSAM's stage {config.stage}")
        self.released = config.stage == "unet" and config.objective == "released"
        if saved is not None and self.released != all(key in saved for key in GUIDANCE_KEYS):
            trained = "the released objective" if not self.released else "the MSE-only objective"
            raise InputError(f"{resume}: a run of {trained} (resume it with the objective it was trained with)")
        super().__init__(config)
        self.samples = open_dataset(config.data, split="train", image_dir=None, size=config.image_size)
        self.model = build_glesam(config)
        # segment-everything settings travel on from the SAM checkpoint (stage unet) or stage unet's
        self.amg_defaults = read_amg_defaults(config.sam_checkpoint if config.stage == "unet" else config.checkpoint)
        self.model.enhancer.train_base = config.stage == "unet" and config.unet is None
        self.parameters = [p for _, p in glesam_trainable(self.model, config.stage)]
        self.model.to(self.device)
        self.model.eval()  # SAM and the U-Net have no batch statistics; dropout stays off as published (0)
        self.guidance: Optional[Guidance] = None
        self.generator_logs: dict[str, float] = {}
        if self.released:
            self._build_guidance()
        else:
            self.step_module = self.dist.wrap(GleSamStep(self.model, config.stage, config.image_size))
        if config.stage == "unet":
            self.optimizer = torch.optim.AdamW(self.parameters, lr=config.lr, weight_decay=0.01)
            self.scheduler = get_scheduler("constant_with_warmup", self.optimizer, num_warmup_steps=config.warmup)
        else:
            self.optimizer = torch.optim.Adam(self.parameters, lr=config.lr, weight_decay=1e-5)
            self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, 10)
        self.plan_steps(self.samples, config.batch_size)
        if saved is not None:
            self.load(resume, saved)

    def _build_guidance(self) -> None:
        """The released objective's real and fake score U-Nets and classifier (from the generator at its
        start), the generator's and their DDP-wrapped objectives, and the guidance optimizer and schedule."""
        config = self.config
        self.guidance = Guidance(self.model.enhancer, self.model.sam.config.embedding_size, self.model.enhancer.train_base)
        self.guidance.requires_grad_(False)
        self.guidance_parameters = [p for _, p in self.guidance.trainable()]
        for parameter in self.guidance_parameters:
            parameter.requires_grad_(True)
        self.guidance.to(self.device).eval()
        self.generator_module = self.dist.wrap(GeneratorStep(self.model.enhancer, self.guidance))
        self.guidance_module = self.dist.wrap(self.guidance)
        self.guidance_optimizer = torch.optim.AdamW(self.guidance_parameters, lr=config.lr, weight_decay=0.01)
        self.guidance_scheduler = get_scheduler("constant_with_warmup", self.guidance_optimizer, num_warmup_steps=config.warmup)

    def model_state(self) -> dict[str, Any]:
        state = checkpoint_dict(self.model, unet_source=self.config.unet, amg_defaults=self.amg_defaults)
        if self.guidance is not None:
            state.update(guidance=self.guidance.fake_state(), generator_logs=dict(self.generator_logs))
        return state

    def load_model_state(self, saved: dict[str, Any], path: str) -> None:
        try:
            self.model.sam.load_state_dict(saved["sam"])
            self.model.enhancer.unet.load_state_dict(saved["unet"], strict=False)
            if self.guidance is not None:
                self.guidance.load_state_dict(saved["guidance"], strict=False)
                self.generator_logs = dict(saved.get("generator_logs", {}))
        except RuntimeError as error:  # another SAM size, U-Net or LoRA rank than this run's
            raise InputError(f"{path}: its weights do not fit this run's model ({str(error).splitlines()[0]})") from None

    def state(self) -> dict[str, Any]:
        state = super().state()
        if self.guidance is not None:
            state.update(guidance_optimizer=self.guidance_optimizer.state_dict(),
                         guidance_scheduler=self.guidance_scheduler.state_dict())
        return state

    def load(self, path: str, saved: dict[str, Any]) -> None:
        super().load(path, saved)
        if self.guidance is not None:
            self.guidance_optimizer.load_state_dict(saved["guidance_optimizer"])
            self.guidance_scheduler.load_state_dict(saved["guidance_scheduler"])

    def batch(self, step: int) -> tuple[Batch, torch.Tensor]:
        """This rank's batch of optimizer step `step`: clear images, their LQSeg versions, masks and prompts."""
        config = self.config
        epoch, position = divmod(step, self.steps_per_epoch)
        indices = self.epoch_order(epoch)[position * config.batch_size : (position + 1) * config.batch_size]
        batch = make_batch([self.samples[i] for i in indices], indices, epoch=epoch, seed=config.seed,
                           size=config.image_size, prompt=config.prompt, num_points=config.num_points,
                           degrade_online=False, level=3, device=self.device)
        seed = int(np.random.default_rng([config.seed, step, 16, self.dist.rank]).integers(2**62))
        return batch, lqseg_training(batch.clear, torch.Generator().manual_seed(seed), level=config.level,
                                     chain=config.lqseg_chain)

    def released_step(self) -> dict[str, float]:
        """One iteration of the released stage one: the generator's update on every GENERATOR_EVERY-th
        iteration (its terms logged with `generator_step`, the step they were computed at, until the
        next one), the guidance update on every iteration; both schedules step every iteration."""
        batch, degraded = self.batch(self.step)
        sam, enhancer = self.model.sam, self.model.enhancer
        low = self.model.encode(sam.normalize_images(degraded))
        high = self.model.encode(sam.normalize_images(batch.clear))
        if self.step % GENERATOR_EVERY == 0:
            for parameter in self.guidance_parameters:  # the generator's loss reaches no guidance weight
                parameter.requires_grad_(False)
            losses = self.generator_module(low, high)
            self.optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.parameters, 10.0))
            self.optimizer.step()
            for parameter in self.guidance_parameters:
                parameter.requires_grad_(True)
            generated = losses.pop("generated")
            self.generator_logs = {key: float(value.detach()) for key, value in losses.items()}
            self.generator_logs.update(grad_norm=grad_norm, generator_step=self.step + 1)
        else:
            with torch.no_grad():
                generated = enhancer.scaled_x0(low)
        self.scheduler.step()
        terms = self.guidance_module(generated, high * enhancer.feature_weight)
        self.guidance_optimizer.zero_grad(set_to_none=True)
        terms["guidance_loss"].backward()
        logs = {key: float(value.detach()) for key, value in terms.items()}
        logs["guidance_grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.guidance_parameters, 10.0))
        self.guidance_optimizer.step()
        self.guidance_scheduler.step()
        self.step += 1
        return {**self.generator_logs, **logs}

    def train_step(self) -> dict[str, float]:
        if self.released:
            return self.released_step()
        batch, degraded = self.batch(self.step)
        losses = self.step_module(batch.clear, degraded, batch.masks, batch.points, batch.boxes)
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        logs = {key: float(value.detach()) for key, value in losses.items()}
        if self.config.stage == "unet":
            logs["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.parameters, 10.0))
        self.optimizer.step()
        self.step += 1
        if self.config.stage == "unet":
            self.scheduler.step()
        elif self.step % self.steps_per_epoch == 0:
            self.scheduler.step()
        return logs


def train_glesam(config: GleSamTrainConfig, resume: Optional[str] = None,
                 on_step: Optional[Callable[[StepReport], None]] = None) -> Optional[Path]:
    """Trains one GleSAM stage on this process (all of the job, or one rank of it under torchrun); returns
    the path of `final.pth` on rank 0 (None elsewhere); `on_step` as in `TrainingRun.run`."""
    return GleSamTrainer(config, resume).run(on_step)
