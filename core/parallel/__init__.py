"""More than one process: torchrun launching (`launch_function`), work-balanced shards, sharded segment."""

from .launch import Nodes, WorkerError, launch_function, run_torchrun, torchrun_command
from .segment_shards import add_summaries, job_weights, run_shard, segment_worker, shard_run
from .shard import Shard, assign_shards, parse_shard, shard_from_env

__all__ = [
    "Nodes", "WorkerError", "launch_function", "run_torchrun", "torchrun_command",
    "add_summaries", "job_weights", "run_shard", "segment_worker", "shard_run",
    "Shard", "assign_shards", "parse_shard", "shard_from_env",
]
