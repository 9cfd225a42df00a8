"""One torchrun worker: `python -m train.worker CONFIG.json [--resume CKPT]` (started by `train.launch`)."""

from __future__ import annotations

import argparse

from .config import TrainConfig
from .trainer import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config")
    parser.add_argument("--resume")
    args = parser.parse_args()
    train(TrainConfig.load(args.config), args.resume)


if __name__ == "__main__":
    main()
