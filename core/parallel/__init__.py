"""More than one process, for any run: torchrun launching (`launch_function` runs a typed job in
every worker), work-balanced deterministic shards, the state every split run shares (`mark_done`:
the last shard merges), and typed payloads and summaries (`to_json`/`from_json`, `merge`).

Each run's shard adapter lives beside the run it splits: `core.inference.segment_shards`,
`core.evaluation.shards`, `core.degradations.shards`, `priors.run`.
"""

from .job import STATE_DIR, counter, image_area, mark_done, worker_device
from .launch import Nodes, WorkerError, launch_function, run_torchrun, torchrun_command
from .payload import SAME, SLOWEST, from_json, merge, to_json
from .shard import Shard, assign_shards, parse_shard, shard_from_env, shard_items

__all__ = [
    "Nodes", "WorkerError", "launch_function", "run_torchrun", "torchrun_command",
    "STATE_DIR", "counter", "image_area", "mark_done", "worker_device",
    "SAME", "SLOWEST", "from_json", "merge", "to_json",
    "Shard", "assign_shards", "parse_shard", "shard_from_env", "shard_items",
]
