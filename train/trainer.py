"""RobustSAM training (stage robust, or stage base: a small SAM): one process, or one of many under torchrun."""

from __future__ import annotations

import math
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from core.inference.loading import is_sam2_checkpoint, open_model
from core.model.backbone import Backbone
from core.model.build import build_robustsam
from core.model.sam2_config import is_sam2_type
from core.model.checkpoint import RobustModulesUninitialized, is_robust_key
from core.model.config import get_config
from core.model.decoder import ablated_parameters
from core.errors import InputError
from core.model.robustsam import RobustSam

from .config import TrainConfig
from .data import (
    VALIDATION_FIRST_SEED,
    OfflinePairs,
    SampleReader,
    batch_prompt,
    make_batch,
    open_dataset,
    validation_batches,
)
from .loop import StepReport, TrainingRun, read_training_checkpoint
from .step import TrainStep
from .validate import validation_iou


def build_model(config: TrainConfig) -> Backbone:
    """The starting model: from the checkpoints given, or (stage base, none given) fresh weights of
    `model_type`. Weights no checkpoint provides are drawn from the seed."""
    torch.manual_seed(config.seed)
    if config.checkpoint is None and config.sam_checkpoint is None:
        if config.stage != "base":
            raise InputError("--sam-checkpoint: stage robust needs a SAM (or RobustSAM) checkpoint to start from")
        if config.model_type is None:
            raise InputError("--model-type: needed to train a SAM from scratch")
        return RobustSam(get_config(config.model_type), config.model_type)
    with warnings.catch_warnings():
        # Untrained robust modules are what training starts from, not something to warn about.
        warnings.simplefilter("ignore", RobustModulesUninitialized)
        paths = [path for path in (config.checkpoint, config.sam_checkpoint) if path is not None]
        if is_sam2_type(config.model_type) or any(map(is_sam2_checkpoint, paths)):
            if config.stage == "base":
                raise InputError("--stage base trains a SAM (ViT) model; SAM 2 trains --stage robust on its released weights")
            first, *rest = paths
            model = open_model(first, sam_checkpoint=rest[0] if rest else None, model_type=config.model_type)
        else:
            model = build_robustsam(config.model_type, config.checkpoint, sam_checkpoint=config.sam_checkpoint)
    model.decoder.ablate(config.ablate)
    return model


def trainable_names(model: Backbone, config: TrainConfig) -> list[str]:
    """Names of the parameters the run updates; every other parameter stays bit-identical."""
    names = []
    unused = ablated_parameters(model.decoder, model.decoder_prefix)
    for name, _ in model.named_parameters():
        robust = is_robust_key(name)
        if config.stage == "base":
            keep = not robust
        else:
            keep = (robust and name not in unused) or (config.train_decoder and name.startswith(model.decoder_prefix))
        if keep:
            names.append(name)
    return names


def set_modes(model: Backbone, config: TrainConfig) -> None:
    """Train mode where parameters learn (BatchNorm uses batch statistics there), eval mode elsewhere."""
    model.eval()
    if config.stage == "base":
        model.image_encoder.train()
        model.prompt_encoder.train()
        model.mask_decoder.train()
    for name, module in model.decoder.named_children():
        if is_robust_key(f"{model.decoder_prefix}{name}."):
            module.train(config.stage == "robust")


def training_state(model: Backbone, config: TrainConfig) -> dict[str, torch.Tensor]:
    """What a checkpoint keeps of the model: the full state for stage base, the robust modules otherwise
    (plus SAM's decoder when it was trained)."""
    state = model.state_dict()
    if config.stage == "base":
        return state
    keep = lambda key: is_robust_key(key) or (config.train_decoder and key.startswith(model.decoder_prefix))  # noqa: E731
    return {key: value for key, value in state.items() if keep(key)}


class Trainer(TrainingRun):
    """Owns the model, optimizer, schedule and data of one RobustSAM run; `run()` (train.loop) trains to the end."""

    def __init__(self, config: TrainConfig, resume: Optional[str] = None) -> None:
        check_config(config)
        saved = read_resume(resume) if resume is not None else None  # a bad file fails before anything is written
        super().__init__(config)

        self.data = self._training_data()
        self.model = build_model(config).to(self.device)
        names = set(trainable_names(self.model, config))
        for name, parameter in self.model.named_parameters():
            parameter.requires_grad_(name in names)
        self.parameters = [p for n, p in self.model.named_parameters() if n in names]
        set_modes(self.model, config)

        # Prompt types vary by step and some parameters (e.g. box corner embeddings) sit out a step.
        self.step_module = self.dist.wrap(TrainStep(self.model, config.stage, config.loss, config.resolved_weights()),
                                          find_unused_parameters=True)

        optimizer_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = optimizer_class(self.parameters, lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=config.lr_step, gamma=config.lr_gamma
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=config.precision == "fp16" and self.device.type == "cuda")

        self.plan_steps(self.data, config.batch_size * config.accumulate)
        self.val_batches = self._validation_batches()
        if saved is not None:
            self.load(resume, saved)

    def _training_data(self) -> SampleReader:
        config = self.config
        if config.degrade == "offline":
            if not (Path(config.data) / config.split / "clear").is_dir():
                raise InputError(
                    f"{config.data}: --degrade offline needs the Robust-Seg layout "
                    f"({config.split}/clear/ and degradation folders)"
                )
            return OfflinePairs(config.data, config.split)
        return open_dataset(config.data, split=config.split, image_dir=config.image_dir, size=config.image_size)

    def _validation_batches(self) -> list:
        config = self.config
        if not self.dist.is_main or config.val_every <= 0:
            return []
        if config.val_data is not None:
            samples = open_dataset(config.val_data, split=config.val_split, image_dir=config.image_dir,
                                   size=config.image_size, first_seed=VALIDATION_FIRST_SEED)
        elif config.data.startswith("synthetic:"):
            style = config.data.split(":")[2] if config.data.count(":") == 2 else "geometric"
            samples = open_dataset(f"synthetic:{config.val_count}:{style}", split="", image_dir=None,
                                   size=config.image_size, first_seed=VALIDATION_FIRST_SEED)
        else:
            return []
        return validation_batches(
            samples, count=config.val_count, batch_size=max(config.batch_size, 8), seed=config.seed,
            size=config.image_size, prompt=config.prompt, num_points=config.num_points, level=config.level,
            device=self.device,
        )

    def model_state(self) -> dict[str, Any]:
        # A robust-modules-only state can fit several model types (vit_micro and vit_micro_p8): the type is kept.
        return {"model": training_state(self.model, self.config), "model_type": self.model.model_type}

    def load_model_state(self, saved: dict[str, Any], path: str) -> None:
        expected = set(training_state(self.model, self.config))
        if set(saved["model"]) != expected:
            raise InputError(
                f"{path}: its model keys do not match this run's stage/model "
                f"({len(saved['model'])} vs {len(expected)} keys)"
            )
        self.model.load_state_dict(saved["model"], strict=False)

    def train_step(self) -> dict[str, float]:
        """One optimizer step over `accumulate` micro-batches; returns the mean loss components."""
        config = self.config
        epoch, within = divmod(self.step, self.steps_per_epoch)
        order = self.epoch_order(epoch)
        prompt = batch_prompt(config.prompt, config.seed, self.step)
        sums: dict[str, float] = {}
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16 if config.precision == "bf16" else torch.float16)
            if config.precision != "fp32" and self.device.type == "cuda"
            else nullcontext()
        )
        for micro in range(config.accumulate):
            start = (within * config.accumulate + micro) * config.batch_size
            indices = order[start : start + config.batch_size]
            batch = make_batch(
                [self.data[i] for i in indices], indices, epoch=epoch, seed=config.seed, size=config.image_size,
                prompt=prompt, num_points=config.num_points,
                degrade_online=config.degrade == "online" and config.stage == "robust",
                level=config.level, device=self.device, masks_per_image=config.masks_per_image,
            )
            last = micro == config.accumulate - 1
            sync = nullcontext() if last or self.dist.world == 1 else self.step_module.no_sync()
            with sync:
                with autocast:
                    losses = self.step_module(batch.clear, batch.degraded, batch.masks, batch.points, batch.boxes,
                                              batch.image_index)
                self.scaler.scale(losses["total"] / config.accumulate).backward()
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach()) / config.accumulate
        if not self.scaler.is_enabled() and not all(map(math.isfinite, sums.values())):
            # fp16's scaler skips such steps itself; otherwise a NaN would silently poison every weight.
            raise FloatingPointError(
                f"step {self.step + 1}: the loss is not finite ({sums}); "
                "lower --lr or resume from an earlier checkpoint"
            )
        self.scaler.unscale_(self.optimizer)
        sums["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.parameters, config.clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if self.step % self.steps_per_epoch == 0:
            self.scheduler.step()
        return sums

    def validate(self) -> dict[str, float]:
        paths = ("sam",) if self.config.stage == "base" else ("robust", "sam")
        self.model.eval()
        try:
            return validation_iou(self.model, self.val_batches, paths)
        finally:
            set_modes(self.model, self.config)

    def scheduled_validation(self) -> dict[str, float]:
        if self.val_batches and (self.step % self.config.val_every == 0 or self.step == self.total_steps):
            return self.validate()
        return {}


def read_resume(path: str) -> dict[str, Any]:
    """The content of a checkpoint of robustsam train; InputError naming the file when it is not one."""
    return read_training_checkpoint(path, ("model",), "robustsam train")


def check_config(config: TrainConfig) -> None:
    """InputError for settings that cannot run, before any model is built."""
    from core.inference.predictor import PRECISIONS

    from .config import DEGRADE_MODES, LOSSES, OPTIMIZERS, PROMPTS, STAGES

    choices = (("stage", STAGES), ("prompt", PROMPTS), ("degrade", DEGRADE_MODES), ("loss", LOSSES),
               ("optimizer", OPTIMIZERS), ("precision", PRECISIONS))
    for name, allowed in choices:
        if getattr(config, name) not in allowed:
            raise InputError(f"--{name}: {getattr(config, name)!r} is not one of {', '.join(allowed)}")
    for name in ("image_size", "batch_size", "accumulate", "epochs", "num_points", "masks_per_image", "lr_step"):
        if getattr(config, name) < 1:
            raise InputError(f"--{name.replace('_', '-')}: must be at least 1, got {getattr(config, name)}")
    if config.max_steps is not None and config.max_steps < 1:
        raise InputError(f"--max-steps: must be at least 1, got {config.max_steps}")
    if not 1 <= config.level <= 5:
        raise InputError(f"--level: must be 1..5, got {config.level}")
    if config.lr <= 0 or config.clip <= 0:
        raise InputError("--lr and --clip must be positive")
    for path in (config.checkpoint, config.sam_checkpoint):
        if path is not None and not Path(path).is_file():
            raise InputError(f"{path}: no such checkpoint file")


def train(config: TrainConfig, resume: Optional[str] = None,
          on_step: Optional[Callable[[StepReport], None]] = None) -> Optional[Path]:
    """Runs one training process (all of the job, or one rank of it under torchrun); `on_step` as in `Trainer.run`."""
    return Trainer(config, resume).run(on_step)

