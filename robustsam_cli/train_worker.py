"""A torchrun worker of `robustsam train --gpus N` that shows the run's progress (rank 0 reports)."""

from __future__ import annotations

import os

from train.worker import parse_worker_args, run_training

from .train_progress import step_reporter


def main() -> None:
    config, resume = parse_worker_args()
    with step_reporter(enabled=os.environ.get("RANK", "0") == "0") as report:
        run_training(config, resume, report)


if __name__ == "__main__":
    main()
