"""One torchrun worker: `python -m train.worker CONFIG.json [--resume CKPT]` (started by `train.launch`),
running the trainer of the method the configuration names."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Union

from .config import TrainConfig
from .loop import StepReport
from .trainer import train

if TYPE_CHECKING:
    from .glesam import GleSamTrainConfig

AnyConfig = Union[TrainConfig, "GleSamTrainConfig"]


def read_config(path: str | Path) -> AnyConfig:
    """The run configuration `train.launch` wrote: GleSAM's when it says `"method": "glesam"`, else RobustSAM's."""
    values = json.loads(Path(path).read_text())
    if values.get("method") == "glesam":
        from .glesam import GleSamTrainConfig  # diffusers and peft only for GleSAM runs

        return GleSamTrainConfig.from_dict(values)
    return TrainConfig.from_dict(values)


def run_training(config: AnyConfig, resume: Optional[str] = None,
                 on_step: Optional[Callable[[StepReport], None]] = None) -> Optional[Path]:
    """Trains with the method of `config` on this process; the final checkpoint's path on rank 0."""
    if isinstance(config, TrainConfig):
        return train(config, resume, on_step)
    from .glesam import train_glesam

    return train_glesam(config, resume, on_step)


def parse_worker_args() -> tuple[AnyConfig, Optional[str]]:
    """The run's configuration and the checkpoint to resume, from this worker's command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config")
    parser.add_argument("--resume")
    args = parser.parse_args()
    return read_config(args.config), args.resume


def main() -> None:
    run_training(*parse_worker_args())


if __name__ == "__main__":
    main()
