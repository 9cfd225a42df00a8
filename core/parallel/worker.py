"""One torchrun worker: `python -m core.parallel.worker JOB.json` (started by `core.parallel.launch_function`).

Runs the job's worker function on its typed job and this rank's shard; a failure leaves
`error-RANK.txt` with its one line.
"""

from __future__ import annotations

import importlib
import json
import sys
import typing
from pathlib import Path

import torch
import torch.distributed as dist

from ..io import atomic_path
from .launch import write_progress
from .payload import from_json, to_json
from .shard import shard_from_env


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    state_dir = Path(job["state_dir"])
    shard = shard_from_env()
    assert shard is not None, "run under torchrun"
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    module, name = job["worker"].split(":")
    try:
        worker = getattr(importlib.import_module(module), name)
        payload = from_json(typing.get_type_hints(worker)["job"], job["job"])
        result = worker(payload, shard=shard, progress=lambda done, total: write_progress(state_dir, shard.index, done, total))
    except Exception as error:  # the parent turns this line into the command's error
        with atomic_path(state_dir / f"error-{shard.index}.txt") as tmp:
            tmp.write_text(f"rank {shard.index}: {error}\n", encoding="utf-8")
        sys.exit(1)
    with atomic_path(state_dir / f"result-{shard.index}.json") as tmp:
        tmp.write_text(json.dumps(to_json(result)), encoding="utf-8")
    # No worker leaves the rendezvous while another still works (NCCL/gloo tear-down would fail it).
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
