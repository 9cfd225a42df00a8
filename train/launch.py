"""`--gpus N` for training: N workers through `core.parallel` (torchrun), each running `train.worker`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from core.parallel import Nodes, run_torchrun

if TYPE_CHECKING:
    from .worker import AnyConfig

LAUNCH_CONFIG = "launch-config.json"


def launch(
    config: AnyConfig,
    *,
    processes: int,
    resume: Optional[str] = None,
    nnodes: int = 1,
    node_rank: int = 0,
    master_addr: str = "127.0.0.1",
    master_port: int = 29500,
    worker: str = "train.worker",
) -> int:
    """Runs `processes` workers on this node (of `nnodes`) and returns torchrun's exit status.

    The configuration (RobustSAM's or GleSAM's, which names its method) travels as a JSON file in the
    output folder; workers read it (`train.worker.read_config`), rank 0 writes. `worker` is the module
    each process runs (`train.worker`, or one that shows progress).
    """
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    config_path = output / LAUNCH_CONFIG
    config.save(config_path)
    args = [str(config_path)] + (["--resume", resume] if resume is not None else [])
    return run_torchrun(Nodes(processes, nnodes, node_rank, master_addr, master_port), worker, args)
