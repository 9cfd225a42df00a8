"""The training loop: one process, or one of many under torchrun (DistributedDataParallel)."""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from core.model.build import build_robustsam
from core.model.checkpoint import RobustModulesUninitialized, is_robust_key, load_torch_file
from core.model.config import get_config
from core.model.decoder import ablated_parameters
from core.device import resolve_device
from core.errors import InputError
from core.data.io import atomic_path
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
from .step import TrainStep
from .validate import validation_iou


class Distributed:
    """This process's place in the job: rank, world size and device (torchrun's environment, or one process)."""

    def __init__(self, device: str) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = resolve_device(device)
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", local_rank)
            torch.cuda.set_device(self.device)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def build_model(config: TrainConfig) -> RobustSam:
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
        model = build_robustsam(config.model_type, config.checkpoint, sam_checkpoint=config.sam_checkpoint)
    model.mask_decoder.ablate(config.ablate)
    return model


def trainable_names(model: RobustSam, config: TrainConfig) -> list[str]:
    """Names of the parameters the run updates; every other parameter stays bit-identical."""
    names = []
    unused = ablated_parameters(model.mask_decoder)
    for name, _ in model.named_parameters():
        robust = is_robust_key(name)
        if config.stage == "base":
            keep = not robust
        else:
            keep = (robust and name not in unused) or (config.train_decoder and name.startswith("mask_decoder."))
        if keep:
            names.append(name)
    return names


def set_modes(model: RobustSam, config: TrainConfig) -> None:
    """Train mode where parameters learn (BatchNorm uses batch statistics there), eval mode elsewhere."""
    model.eval()
    if config.stage == "base":
        model.image_encoder.train()
        model.prompt_encoder.train()
        model.mask_decoder.train()
    for name, module in model.mask_decoder.named_children():
        if is_robust_key(f"mask_decoder.{name}."):
            module.train(config.stage == "robust")


def training_state(model: RobustSam, config: TrainConfig) -> dict[str, torch.Tensor]:
    """What a checkpoint keeps of the model: the full state for stage base, the robust modules otherwise
    (plus SAM's decoder when it was trained)."""
    state = model.state_dict()
    if config.stage == "base":
        return state
    keep = lambda key: is_robust_key(key) or (config.train_decoder and key.startswith("mask_decoder."))  # noqa: E731
    return {key: value for key, value in state.items() if keep(key)}


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Owns the model, optimizer, schedule, data and the files of one run. `run()` trains to the end."""

    def __init__(self, config: TrainConfig, resume: Optional[str] = None) -> None:
        check_config(config)
        self.config = config
        self.dist = Distributed(config.device)
        self.device = self.dist.device
        self.output = Path(config.output)
        if self.dist.is_main:
            self.output.mkdir(parents=True, exist_ok=True)

        self.data = self._training_data()
        self.model = build_model(config).to(self.device)
        names = set(trainable_names(self.model, config))
        for name, parameter in self.model.named_parameters():
            parameter.requires_grad_(name in names)
        self.parameters = [p for n, p in self.model.named_parameters() if n in names]
        set_modes(self.model, config)

        step_module = TrainStep(self.model, config.stage, config.loss, config.resolved_weights())
        self.step_module: torch.nn.Module = step_module
        if self.dist.world > 1:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            # Prompt types vary by step and some parameters (e.g. box corner embeddings) sit out a step.
            self.step_module = DistributedDataParallel(step_module, device_ids=device_ids, find_unused_parameters=True)

        optimizer_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = optimizer_class(self.parameters, lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=config.lr_step, gamma=config.lr_gamma
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=config.precision == "fp16" and self.device.type == "cuda")

        self.sampler = DistributedSampler(
            self.data, num_replicas=self.dist.world, rank=self.dist.rank, shuffle=True, seed=config.seed, drop_last=True
        )
        per_step = config.batch_size * config.accumulate
        self.steps_per_epoch = len(self.sampler) // per_step
        if self.steps_per_epoch < 1:
            raise InputError(
                f"{config.data}: {len(self.data)} samples over {self.dist.world} processes are fewer than one step's "
                f"{per_step} (--batch-size x --accumulate)"
            )
        total = config.epochs * self.steps_per_epoch
        self.total_steps = total if config.max_steps is None else min(total, config.max_steps)
        self.step = 0
        self._order: tuple[int, list[int]] = (-1, [])
        self.val_batches = self._validation_batches()
        if resume is not None:
            self.load(resume)

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

    def epoch_order(self, epoch: int) -> list[int]:
        """This process's share of the dataset indices for `epoch` (DistributedSampler's seeded shuffle)."""
        if self._order[0] != epoch:
            self.sampler.set_epoch(epoch)
            self._order = (epoch, list(self.sampler))
        return self._order[1]

    def state(self) -> dict[str, Any]:
        return {
            "model": training_state(self.model, self.config),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "rng": rng_state(),
            "config": self.config.to_dict(),
        }

    def save(self, name: str) -> Path:
        path = self.output / name
        with atomic_path(path) as temporary:
            torch.save(self.state(), temporary)
        return path

    def load(self, path: str) -> None:
        """Continues the run saved in `path` exactly where it stopped."""
        saved = load_torch_file(path, "checkpoint", "readable training checkpoint")
        if not isinstance(saved, dict) or not {"model", "optimizer", "scheduler", "step"} <= set(saved):
            raise InputError(f"{path}: not a checkpoint of robustsam train (needs model, optimizer, scheduler, step)")
        expected = set(training_state(self.model, self.config))
        if set(saved["model"]) != expected:
            raise InputError(
                f"{path}: its model keys do not match this run's stage/model "
                f"({len(saved['model'])} vs {len(expected)} keys)"
            )
        self.model.load_state_dict(saved["model"], strict=False)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.step = int(saved["step"])
        if "rng" in saved:
            set_rng_state(saved["rng"])

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

    def ranks_identical(self) -> Optional[bool]:
        """Whether every process ends with bit-identical trainable weights (None for one process)."""
        if self.dist.world == 1:
            return None
        mine = torch.cat([p.detach().flatten() for p in self.parameters]).cpu()
        gathered = [torch.empty_like(mine) for _ in range(self.dist.world)]
        if self.device.type == "cuda":
            gathered = [g.to(self.device) for g in gathered]
            mine = mine.to(self.device)
        dist.all_gather(gathered, mine)
        return all(torch.equal(g, gathered[0]) for g in gathered)

    def validate(self) -> dict[str, float]:
        paths = ("sam",) if self.config.stage == "base" else ("robust", "sam")
        self.model.eval()
        try:
            return validation_iou(self.model, self.val_batches, paths)
        finally:
            set_modes(self.model, self.config)

    def run(self) -> Optional[Path]:
        """Trains to the last step; returns the final checkpoint's path on rank 0 (None elsewhere)."""
        config = self.config
        main = self.dist.is_main
        log = (self.output / "log.jsonl").open("a") if main else None
        console = Console(soft_wrap=True)  # a log file gets whole lines, never wrapped or cut
        # Not a terminal (CI, nohup): plain progress lines every log_every steps instead of a bar.
        plain = main and config.progress and not console.is_terminal
        progress = Progress(
            TextColumn("[bold]train[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), disable=plain or not (main and config.progress), console=console,
        )
        images_per_step = config.batch_size * config.accumulate * self.dist.world
        final = None
        try:
            with progress:
                task = progress.add_task("train", total=self.total_steps, completed=self.step, info="")
                while self.step < self.total_steps:
                    started = time.perf_counter()
                    losses = self.train_step()
                    throughput = images_per_step / max(time.perf_counter() - started, 1e-9)
                    if main:
                        shown = " ".join(f"{k} {v:.4f}" for k, v in losses.items() if k != "grad_norm")
                        progress.update(task, completed=self.step, info=f"{shown} | {throughput:.1f} img/s")
                        if self.step % config.log_every == 0 or self.step == self.total_steps:
                            if plain:
                                console.print(f"train step {self.step}/{self.total_steps} {shown} | {throughput:.1f} img/s",
                                              markup=False, highlight=False)
                            record = {"step": self.step, "epoch": (self.step - 1) // self.steps_per_epoch,
                                      "lr": self.optimizer.param_groups[0]["lr"], "images_per_s": throughput, **losses}
                            log.write(json.dumps(record) + "\n")
                            log.flush()
                        if self.val_batches and (self.step % config.val_every == 0 or self.step == self.total_steps):
                            scores = self.validate()
                            log.write(json.dumps({"step": self.step, "val_iou": scores}) + "\n")
                            log.flush()
                            shown = ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
                            progress.console.print(f"step {self.step} validation IoU: {shown}")
                        if config.save_every > 0 and self.step % config.save_every == 0:
                            self.save(f"checkpoint-{self.step:07d}.pth")
            identical = self.ranks_identical()
            if main:
                if identical is not None:
                    log.write(json.dumps({"step": self.step, "ranks_identical": identical}) + "\n")
                final = self.save("final.pth")
        finally:
            if log is not None:
                log.close()
            self.dist.close()
        return final


def check_config(config: TrainConfig) -> None:
    """InputError for settings that cannot run, before any model is built."""
    from .config import DEGRADE_MODES, LOSSES, OPTIMIZERS, PRECISIONS, PROMPTS, STAGES

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
            raise InputError(f"{path}: no such checkpoint")


def train(config: TrainConfig, resume: Optional[str] = None) -> Optional[Path]:
    """Runs one training process (all of the job, or one rank of it under torchrun)."""
    return Trainer(config, resume).run()

