"""What every training run shares, whatever the method: the process's place in the job, each rank's data
order, the loop with its progress reports and log.jsonl lines, checkpoints holding the full training
state, and exact resume. RobustSAM's `Trainer` and GleSAM's `GleSamTrainer` are `TrainingRun`s."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sized

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from core.io import atomic_path
from core.device import resolve_device
from core.errors import InputError
from core.io import load_torch_file

FINAL = "final.pth"
TRAINING_KEYS = ("optimizer", "scheduler", "step")


def checkpoint_name(step: int) -> str:
    """The file name of the periodic checkpoint after optimizer step `step`."""
    return f"checkpoint-{step:07d}.pth"


@dataclass(frozen=True)
class StepReport:
    """What `TrainingRun.run` tells its caller after each optimizer step (on rank 0 only).

    `logged`: this step went to log.jsonl (every `log_every` steps and the last); `validation`:
    validation IoU per path when this step validated."""

    step: int
    total: int
    losses: dict[str, float]
    images_per_s: float
    logged: bool
    validation: dict[str, float] = field(default_factory=dict)


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

    def wrap(self, module: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
        """`module` under DistributedDataParallel when there is more than one process (its trainable
        parameters' gradients are then averaged over the ranks), else `module` itself."""
        if self.world == 1:
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=find_unused_parameters)

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_training_checkpoint(path: str, model_keys: tuple[str, ...], what: str) -> dict[str, Any]:
    """The content of a checkpoint a run of `what` wrote (its `model_keys` and the training state);
    InputError naming the file when it is not one."""
    saved = load_torch_file(path, "checkpoint", "readable training checkpoint")
    needed = model_keys + TRAINING_KEYS
    if not isinstance(saved, dict) or not set(needed) <= set(saved):
        raise InputError(f"{path}: not a checkpoint of {what} (needs {', '.join(needed)})")
    return saved


class TrainingRun:
    """The loop and files of one run. A method's trainer calls `__init__` (process group, output folder)
    and `plan_steps` (data order, step count), builds `optimizer`, `scheduler` and the trainable
    `parameters`, and defines `train_step`, `model_state` and `load_model_state`.

    `config` needs: output, device, seed, stage, batch_size, epochs, max_steps, log_every, save_every, to_dict().
    """

    optimizer: torch.optim.Optimizer
    scheduler: Any
    parameters: list[nn.Parameter]

    def __init__(self, config: Any) -> None:
        self.config = config
        self.dist = Distributed(config.device)
        self.device = self.dist.device
        self.output = Path(config.output)
        if self.dist.is_main:
            self.output.mkdir(parents=True, exist_ok=True)

    def plan_steps(self, data: Sized, per_step: int) -> None:
        """Each rank's share of `data` per epoch (DistributedSampler's shuffle seeded by the run's seed,
        the remainder dropped) in steps of `per_step` samples per process, and the run's length."""
        config = self.config
        self.sampler = DistributedSampler(
            data, num_replicas=self.dist.world, rank=self.dist.rank, shuffle=True, seed=config.seed, drop_last=True
        )
        self.per_step = per_step
        self.steps_per_epoch = len(self.sampler) // per_step
        if self.steps_per_epoch < 1:
            raise InputError(
                f"{config.data}: {len(data)} samples over {self.dist.world} processes are fewer than one step's "
                f"{per_step} per process (lower --batch-size)"
            )
        total = config.epochs * self.steps_per_epoch
        self.total_steps = total if config.max_steps is None else min(total, config.max_steps)
        self.step = 0
        self._order: tuple[int, list[int]] = (-1, [])

    def epoch_order(self, epoch: int) -> list[int]:
        """This process's share of the dataset indices for `epoch` (DistributedSampler's seeded shuffle)."""
        if self._order[0] != epoch:
            self.sampler.set_epoch(epoch)
            self._order = (epoch, list(self.sampler))
        return self._order[1]

    def train_step(self) -> dict[str, float]:
        """One optimizer step; advances `step` and returns the loss components."""
        raise NotImplementedError

    def model_state(self) -> dict[str, Any]:
        """The model's entries of a checkpoint."""
        raise NotImplementedError

    def load_model_state(self, saved: dict[str, Any], path: str) -> None:
        """Puts the model entries of the checkpoint `saved` (read from `path`) into the model."""
        raise NotImplementedError

    def scheduled_validation(self) -> dict[str, float]:
        """Validation scores when this step validates (rank 0), else {}."""
        return {}

    def state(self) -> dict[str, Any]:
        return {
            **self.model_state(),
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

    def load(self, path: str, saved: dict[str, Any]) -> None:
        """Continues the run saved in `path` (its content `saved`) exactly where it stopped."""
        self.load_model_state(saved, path)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.step = int(saved["step"])
        if "rng" in saved:
            set_rng_state(saved["rng"])

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

    def run(self, on_step: Optional[Callable[[StepReport], None]] = None) -> Optional[Path]:
        """Trains to the last step, calling `on_step` on rank 0 after each step; returns the final
        checkpoint's path on rank 0 (None elsewhere). Only rank 0 writes files."""
        config = self.config
        main = self.dist.is_main
        log = (self.output / "log.jsonl").open("a") if main else None
        images_per_step = self.per_step * self.dist.world
        started_run = time.perf_counter()
        final = None
        try:
            while self.step < self.total_steps:
                started = time.perf_counter()
                losses = self.train_step()
                throughput = images_per_step / max(time.perf_counter() - started, 1e-9)
                if not main:
                    continue
                logged = self.step % config.log_every == 0 or self.step == self.total_steps
                if logged:
                    record = {"step": self.step, "stage": config.stage, "epoch": (self.step - 1) // self.steps_per_epoch,
                              "lr": self.optimizer.param_groups[0]["lr"], "images_per_s": throughput,
                              "seconds": round(time.perf_counter() - started_run, 3), **losses}
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                scores = self.scheduled_validation()
                if scores:
                    log.write(json.dumps({"step": self.step, "val_iou": scores}) + "\n")
                    log.flush()
                if config.save_every > 0 and self.step % config.save_every == 0:
                    self.save(checkpoint_name(self.step))
                if on_step is not None:
                    on_step(StepReport(self.step, self.total_steps, losses, throughput, logged, scores))
            identical = self.ranks_identical()
            if main:
                if identical is not None:
                    log.write(json.dumps({"step": self.step, "ranks_identical": identical}) + "\n")
                final = self.save(FINAL)
        finally:
            if log is not None:
                log.close()
            self.dist.close()
        return final
