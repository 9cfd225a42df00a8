"""More than one process: torchrun launching (`launch_function`), work-balanced shards, the state
every split command shares (`mark_done`), and the split `segment`, `eval` and `degrade`."""

from .launch import Nodes, WorkerError, launch_function, run_torchrun, torchrun_command
from .job import STATE_DIR, counter, image_area, mark_done, worker_device, worker_model
from .segment_shards import add_summaries, job_weights, run_shard, segment_worker, shard_run
from .eval_shards import eval_job, eval_worker, plan_part
from .degrade_shards import add_degrade_summaries, degrade_part, degrade_worker
from .shard import Shard, assign_shards, parse_shard, shard_from_env, shard_items

__all__ = [
    "Nodes", "WorkerError", "launch_function", "run_torchrun", "torchrun_command",
    "STATE_DIR", "counter", "image_area", "mark_done", "worker_device", "worker_model",
    "add_summaries", "job_weights", "run_shard", "segment_worker", "shard_run",
    "eval_job", "eval_worker", "plan_part",
    "add_degrade_summaries", "degrade_part", "degrade_worker",
    "Shard", "assign_shards", "parse_shard", "shard_from_env", "shard_items",
]
