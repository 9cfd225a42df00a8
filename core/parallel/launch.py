"""N workers on this node through PyTorch's elastic launcher (torchrun), each running one library
function on its shard; progress and errors come back through files in a state folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
import typing
from typing import Any, Callable, Optional, TypeVar

import torch

from ..errors import InputError
from ..io import atomic_path
from .payload import from_json, to_json

Result = TypeVar("Result")

JOB_FILE = "job.json"
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Nodes:
    """torchrun's placement: `processes` workers here, on node `node_rank` of `nnodes`."""

    processes: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500

    @property
    def world_size(self) -> int:
        return self.processes * self.nnodes


class WorkerError(RuntimeError):
    """A worker failed; the message is its one error line."""


def torchrun_command(nodes: Nodes, module: str, args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that start `python -m module args` under torchrun."""
    command = [
        sys.executable, "-m", "torch.distributed.run",
        f"--nproc-per-node={nodes.processes}", f"--nnodes={nodes.nnodes}", f"--node-rank={nodes.node_rank}",
        f"--master-addr={nodes.master_addr}", f"--master-port={nodes.master_port}",
        "-m", module, *args,
    ]
    # Workers import this same source tree, whichever copy of the package is installed.
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    # torchrun sets OMP_NUM_THREADS=1 when unset; CPU kernels then reduce in another order than this
    # process would, and outputs differ in the last bits from a one-process run. Same threads, same bits.
    env.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
    return command, env


def run_torchrun(nodes: Nodes, module: str, args: list[str]) -> int:
    """Runs torchrun in the foreground and returns its exit status."""
    command, env = torchrun_command(nodes, module, args)
    try:
        return subprocess.run(command, env=env, check=False).returncode
    except OSError as error:
        raise InputError(f"{sys.executable}: cannot start torchrun ({error})") from None


def read_progress(state_dir: Path) -> tuple[int, int]:
    """(done, total) summed over every worker's progress file."""
    done = total = 0
    for path in state_dir.glob("progress-*.json"):
        try:
            counts = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # being replaced right now; the next poll reads it
        done, total = done + counts["done"], total + counts["total"]
    return done, total


def write_progress(state_dir: Path, rank: int, done: int, total: int) -> None:
    with atomic_path(state_dir / f"progress-{rank}.json") as tmp:
        tmp.write_text(json.dumps({"done": done, "total": total}), encoding="utf-8")


def worker_name(worker: Callable[..., Any]) -> str:
    """"module:name" by which a worker process imports `worker`."""
    return f"{worker.__module__}:{worker.__qualname__}"


def launch_function(
    worker: Callable[..., Result],
    job: Any,
    state_dir: Path,
    nodes: Nodes,
    on_progress: Optional[Callable[[int, int], None]] = None,
) -> list[Result]:
    """Runs `worker(job, shard=..., progress=...)` in every torchrun worker and returns the results of
    this node's workers, by rank. `job` is a dataclass (sent as JSON, rebuilt from `worker`'s `job`
    annotation); each result is rebuilt from `worker`'s return annotation.

    Raises WorkerError with the first failed worker's error line when any worker fails.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*state_dir.glob("progress-*.json"), *state_dir.glob("error-*.txt"), *state_dir.glob("result-*.json")]:
        stale.unlink()
    job_file = state_dir / JOB_FILE
    with atomic_path(job_file) as tmp:
        tmp.write_text(json.dumps({"worker": worker_name(worker), "job": to_json(job), "state_dir": str(state_dir)}), encoding="utf-8")
    command, env = torchrun_command(nodes, "core.parallel.worker", [str(job_file)])
    log = state_dir / "torchrun.log"
    # A file, not a pipe: a pipe nobody reads while polling would block chatty workers.
    with log.open("w", encoding="utf-8") as stream:
        try:
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stream)
        except OSError as error:
            raise InputError(f"{sys.executable}: cannot start torchrun ({error})") from None
        while process.poll() is None:
            if on_progress is not None:
                on_progress(*read_progress(state_dir))
            time.sleep(POLL_SECONDS)
    stderr = log.read_text(encoding="utf-8", errors="replace")
    if on_progress is not None:
        on_progress(*read_progress(state_dir))
    errors = sorted(state_dir.glob("error-*.txt"))
    if errors:
        raise WorkerError(errors[0].read_text(encoding="utf-8").strip())
    if process.returncode != 0:
        last = [line for line in stderr.splitlines() if line.strip()][-1:] or ["no output"]
        raise WorkerError(f"torchrun workers failed (exit status {process.returncode}): {last[0]}")
    ranks = range(nodes.node_rank * nodes.processes, (nodes.node_rank + 1) * nodes.processes)
    result_type = typing.get_type_hints(worker)["return"]
    return [from_json(result_type, json.loads((state_dir / f"result-{rank}.json").read_text(encoding="utf-8"))) for rank in ranks]
