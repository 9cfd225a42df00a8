"""The settings of one training run; stored in every checkpoint and passed to distributed workers."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional, TypeVar

STAGES = ("robust", "base")
PROMPTS = ("points", "box", "mixed")
DEGRADE_MODES = ("online", "offline")
LOSSES = ("paper", "published")
OPTIMIZERS = ("adam", "adamw")


ConfigT = TypeVar("ConfigT", bound="JsonConfig")


class JsonConfig:
    """A dataclass that round-trips through a JSON file; unknown keys are dropped on reading."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[ConfigT], values: dict[str, Any]) -> ConfigT:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{key: value for key, value in values.items() if key in known})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls: type[ConfigT], path: str | Path) -> ConfigT:
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass
class TrainConfig(JsonConfig):
    """Everything that decides a run's result. Defaults follow the released training code (spec 5).

    stage "robust": the robust modules on a frozen SAM (teacher clear path, student robust path);
    stage "base": every SAM parameter trainable on clear images (a small SAM trained from scratch).
    """

    data: str
    output: str
    stage: str = "robust"
    model_type: Optional[str] = None
    sam_checkpoint: Optional[str] = None
    checkpoint: Optional[str] = None
    image_dir: Optional[str] = None
    split: str = "train"
    val_data: Optional[str] = None
    val_split: str = "val"
    image_size: int = 512
    prompt: str = "points"
    num_points: int = 3
    # Objects prompted per image and step: its largest, then others drawn at random (1: as published).
    masks_per_image: int = 1
    degrade: str = "online"
    level: int = 3
    loss: str = "paper"
    # Paper loss: L_MFC + token_weight * L_TC + seg_weight * (Dice + focal_weight * Focal).
    # Published loss: focal_weight * Focal + dice_weight * Dice + token_weight * L_tok + feature_weight * L_feat.
    focal_weight: Optional[float] = None
    dice_weight: float = 1.0
    token_weight: Optional[float] = None
    feature_weight: Optional[float] = None
    seg_weight: float = 1.0
    iou_weight: float = 1.0
    train_decoder: bool = False
    # Parts of the robust path left out (core.model.decoder.ABLATIONS), for the paper's Table 7.
    ablate: tuple[str, ...] = ()
    optimizer: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 1e-5
    lr_step: int = 10
    lr_gamma: float = 0.1
    clip: float = 1.0
    epochs: int = 20
    max_steps: Optional[int] = None
    batch_size: int = 2
    accumulate: int = 1
    precision: str = "fp32"
    seed: int = 0
    save_every: int = 1000
    val_every: int = 500
    val_count: int = 32
    log_every: int = 10
    device: str = "auto"

    def resolved_weights(self) -> dict[str, float]:
        """The loss weights with the defaults of the chosen loss filled in."""
        if self.loss == "published":
            defaults = {"focal": 20.0, "token": 2.0, "feature": 100.0}
        else:
            defaults = {"focal": 20.0, "token": 1.0, "feature": 1.0}
        return {
            "focal": defaults["focal"] if self.focal_weight is None else self.focal_weight,
            "dice": self.dice_weight,
            "token": defaults["token"] if self.token_weight is None else self.token_weight,
            "feature": defaults["feature"] if self.feature_weight is None else self.feature_weight,
            "seg": self.seg_weight,
            "iou": self.iou_weight,
        }
