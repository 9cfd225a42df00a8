"""`--gpus N`: N worker processes through PyTorch's elastic launcher (torchrun), each running `train.worker`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

from core.errors import InputError

from .config import TrainConfig

LAUNCH_CONFIG = "launch-config.json"


def launch(
    config: TrainConfig,
    *,
    processes: int,
    resume: Optional[str] = None,
    nnodes: int = 1,
    node_rank: int = 0,
    master_addr: str = "127.0.0.1",
    master_port: int = 29500,
) -> int:
    """Runs `processes` workers on this node (of `nnodes`) and returns torchrun's exit status.

    The configuration travels as a JSON file in the output folder; workers read it, rank 0 writes.
    """
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    config_path = output / LAUNCH_CONFIG
    config.save(config_path)
    command = [
        sys.executable, "-m", "torch.distributed.run",
        f"--nproc-per-node={processes}", f"--nnodes={nnodes}", f"--node-rank={node_rank}",
        f"--master-addr={master_addr}", f"--master-port={master_port}",
        "-m", "train.worker", str(config_path),
    ]
    if resume is not None:
        command += ["--resume", resume]
    # Workers import this same source tree, whichever copy of the package is installed.
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    try:
        return subprocess.run(command, env=env, check=False).returncode
    except OSError as error:
        raise InputError(f"{sys.executable}: cannot start torchrun ({error})") from None
