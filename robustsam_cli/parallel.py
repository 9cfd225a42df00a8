"""`--gpus/--nnodes/--node-rank/--master-addr/--master-port` and `--shard K/N`, and one progress bar
for all workers of a launched job."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import click
from rich.progress import Progress

from core.errors import InputError
from core.parallel import Nodes, Shard, WorkerError, launch_function, parse_shard

from .defaults import console
from .options import image_progress

Result = TypeVar("Result")
PARALLEL_OPTIONS = ("gpus", "nnodes", "node_rank", "master_addr", "master_port", "shard")


@dataclass(frozen=True)
class Parallel:
    """How this command splits its work: launched torchrun workers (`nodes`), one `shard`, or neither."""

    nodes: Nodes
    shard: Optional[Shard]

    @property
    def launched(self) -> bool:
        return self.nodes.world_size > 1


def parallel_options(function: Any) -> Any:
    """Adds the options; the command pops them from its keyword arguments with `pop_parallel`."""
    options = [
        click.option("--gpus", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes on this node (torchrun; one GPU each on CUDA, gloo on the CPU)."),
        click.option("--nnodes", type=click.IntRange(min=1), default=1, show_default=True, help="Nodes in the job (torchrun)."),
        click.option("--node-rank", type=click.IntRange(min=0), default=0, show_default=True, help="This node's rank (torchrun)."),
        click.option("--master-addr", default="127.0.0.1", show_default=True, help="Rendezvous address (torchrun)."),
        click.option("--master-port", type=int, default=29500, show_default=True, help="Rendezvous port (torchrun)."),
        click.option("--shard", help="K/N: do shard K of N only (a SLURM array task); the last shard to finish merges."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def pop_parallel(params: dict[str, Any]) -> Parallel:
    """The Parallel of the popped options; InputError for --shard together with --gpus/--nnodes."""
    gpus, nnodes, node_rank, master_addr, master_port, shard = (params.pop(name) for name in PARALLEL_OPTIONS)
    nodes = Nodes(gpus, nnodes, node_rank, master_addr, master_port)
    if shard is not None and nodes.world_size > 1:
        raise InputError("--shard starts no workers; leave out --gpus/--nnodes (or leave out --shard)")
    return Parallel(nodes, parse_shard(shard) if shard is not None else None)


def job_progress(name: str, stderr_console: Any) -> tuple[Progress, Callable[[int, int], None]]:
    """A progress bar for the whole job and the callback (done, total over all workers) that moves it."""
    progress = image_progress(stderr_console)
    task = progress.add_task(name, total=None)

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total or None)

    return progress, update


def launch(name: str, worker: Callable[..., Result], job: Any, state_dir: Path, nodes: Nodes) -> list[Result]:
    """Runs `worker` on `job` in torchrun workers under one progress bar and returns this node's
    worker results; a failed worker fails the command with its error line (exit 1)."""
    progress, update = job_progress(name, console(stderr=True))
    try:
        with progress:
            return launch_function(worker, job, state_dir, nodes, update)
    except WorkerError as error:
        raise click.ClickException(str(error)) from None
