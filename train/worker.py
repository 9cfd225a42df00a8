"""One torchrun worker: `python -m train.worker CONFIG.json [--resume CKPT]` (started by `train.launch`)."""

from __future__ import annotations

import argparse
from typing import Optional

from .config import TrainConfig
from .trainer import train


def parse_worker_args() -> tuple[TrainConfig, Optional[str]]:
    """The run's configuration and the checkpoint to resume, from this worker's command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config")
    parser.add_argument("--resume")
    args = parser.parse_args()
    return TrainConfig.load(args.config), args.resume


def main() -> None:
    train(*parse_worker_args())


if __name__ == "__main__":
    main()
