"""`robustsam train` (stage base: a SAM from scratch; stage robust: the RobustSAM modules on a frozen SAM;
`--method glesam`: GleSAM's two stages), on one process or many. `robustsam export` lives in `export.py`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import click
from click.core import ParameterSource

from core.model.decoder import ABLATIONS
from core.model.default_model import is_default_name
from core.io import require_output_dir
from core.errors import InputError
from train.config import DEGRADE_MODES, LOSSES, OPTIMIZERS, PROMPTS, STAGES, TrainConfig

from .defaults import announce_builtin, builtin_checkpoint, no_leftover_folder
from .options import checkpoint_option, device_option, model_type_option, precision_option, sam_checkpoint_option
from .train_progress import step_reporter

if TYPE_CHECKING:
    from train.glesam import GleSamTrainConfig

_PATH = click.Path(dir_okay=False, path_type=str)


@click.command("train")
@click.option("--data", required=True,
              help="synthetic:N[:style], photos:N[:train|held_out] (scenes textured from the installed sample "
                   "photographs), a COCO .json (with --image-dir), a Robust-Seg root, or a folder with images/ and masks/.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=str),
              help="Folder for checkpoints and log.jsonl.")
@click.option("--method", type=click.Choice(("robustsam", "glesam")), default="robustsam", show_default=True,
              help="robustsam, or glesam: GleSAM's latent enhancer (--stage unet) then SAM's decoder (--stage decoder).")
@click.option("--stage", type=click.Choice(STAGES + ("unet", "decoder")), default="robust", show_default=True,
              help="robust: the robust modules on a frozen SAM; base: every SAM parameter, clear images; "
                   "unet / decoder: GleSAM's two stages (with --method glesam).")
@click.option("--unet", "unet_path", type=click.Path(path_type=str),
              help="GleSAM: a Stable Diffusion U-Net on disk (diffusers folder or single file); default a small random U-Net.")
@click.option("--lora-rank", type=int, default=8, show_default=True, help="GleSAM: LoRA rank (published 8, alpha 8).")
@click.option("--latent-scale", type=float, default=5.0, show_default=True,
              help="GleSAM: the feature weight that aligns SAM's embedding with SD latents (published example 5).")
@model_type_option("Model size (inferred from checkpoints; needed for --stage base from scratch).")
@sam_checkpoint_option("SAM weights to start from (released SAM or a stage-base checkpoint; `default`: the built-in model).", str)
@checkpoint_option("RobustSAM (or robust-modules-only, with --sam-checkpoint) weights to start from; `default`, or "
                   "with neither checkpoint given (stage robust), the built-in model.", str)
@click.option("--image-dir", type=click.Path(file_okay=False, path_type=str), help="Images of a COCO --data file.")
@click.option("--split", default="train", show_default=True, help="Robust-Seg split to train on.")
@click.option("--val-data", help="Validation data (same forms as --data); default: held-out scenes for synthetic data.")
@click.option("--val-split", default="val", show_default=True)
@click.option("--val-count", type=int, default=32, show_default=True, help="Validation images.")
@click.option("--image-size", type=int, default=512, show_default=True,
              help="Images are resized to this square (published: 512).")
@click.option("--prompt", type=click.Choice(PROMPTS), default="points", show_default=True,
              help="Prompts from each mask: random positive points, its box, or either per step.")
@click.option("--num-points", type=int, default=3, show_default=True)
@click.option("--masks-per-image", type=int, default=1, show_default=True,
              help="Objects prompted per image and step: its largest mask, then others drawn at random "
                   "(1: the largest only, as published); the image is encoded once for all of them.")
@click.option("--degrade", type=click.Choice(DEGRADE_MODES), default="online", show_default=True,
              help="online: a uniform draw of the 15 types + identity on the training device; "
              "offline: pairs from the layout.")
@click.option("--level", type=int, default=3, show_default=True,
              help="Online degradation severity 1..5 (3 = published).")
@click.option("--loss", type=click.Choice(LOSSES), default="paper", show_default=True,
              help="paper: L_MFC + l1 L_TC + l2 (Dice + l3 Focal); published: the released code's losses.")
@click.option("--focal-weight", type=float, help="Focal weight (l3 for paper) [20].")
@click.option("--dice-weight", type=float, default=1.0, show_default=True,
              help="Dice weight (published loss, stage base).")
@click.option("--token-weight", type=float, help="Token loss weight (l1 for paper) [paper 1, published 2].")
@click.option("--feature-weight", type=float, help="Feature loss weight [paper 1, published 100].")
@click.option("--seg-weight", type=float, default=1.0, show_default=True,
              help="l2: weight of Dice + l3 Focal (paper loss).")
@click.option("--iou-weight", type=float, default=1.0, show_default=True,
              help="IoU-prediction MSE weight (stage base).")
@click.option("--train-decoder", is_flag=True, help="Also train SAM's decoder (ablation).")
@click.option("--ablate", type=click.Choice(ABLATIONS), multiple=True,
              help="Leave a part of the robust path out (repeatable; the paper's Table 7): the AMFG Fourier step, "
                   "AOTG, or the robust output token (SAM's tokens and hypernetworks read the robust features).")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="adam", show_default=True)
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--weight-decay", type=float, default=1e-5, show_default=True)
@click.option("--lr-step", type=int, default=10, show_default=True, help="StepLR step size in epochs.")
@click.option("--lr-gamma", type=float, default=0.1, show_default=True)
@click.option("--clip", type=float, default=1.0, show_default=True, help="Gradient-norm clipping.")
@click.option("--epochs", type=int, default=20, show_default=True)
@click.option("--max-steps", type=int, help="Stop after this many optimizer steps.")
@click.option("--batch-size", type=int, default=2, show_default=True, help="Images per process per micro-batch.")
@click.option("--accumulate", type=int, default=1, show_default=True, help="Micro-batches per optimizer step.")
@precision_option("Autocast dtype (CUDA only).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--save-every", type=int, default=1000, show_default=True,
              help="Checkpoint every N steps (0: only at the end).")
@click.option("--val-every", type=int, default=500, show_default=True, help="Validate every N steps (0: never).")
@click.option("--log-every", type=int, default=10, show_default=True)
@device_option()
@click.option("--resume", type=_PATH, help="A checkpoint of this run to continue exactly from.")
@click.option("--gpus", type=int, default=1, show_default=True,
              help="Worker processes on this node (torchrun); NCCL on CUDA, gloo on CPU.")
@click.option("--nnodes", type=int, default=1, show_default=True)
@click.option("--node-rank", type=int, default=0, show_default=True)
@click.option("--master-addr", default="127.0.0.1", show_default=True)
@click.option("--master-port", type=int, default=29500, show_default=True)
@click.option("--no-progress", is_flag=True, help="No progress bar (log.jsonl is still written).")
@click.option("--safetensors", "write_safetensors", is_flag=True,
              help="Also write final.safetensors: the trained weights, with model type and RobustSAM/SAM split as metadata.")
def train_command(resume: Optional[str], gpus: int, nnodes: int, node_rank: int, master_addr: str, master_port: int,
                  no_progress: bool, write_safetensors: bool, **settings) -> None:
    """Train RobustSAM (or, with --stage base, a small SAM; with --method glesam, GleSAM) on one process or many.

    \b
    robustsam train --data robust_seg/ --sam-checkpoint sam_vit_l_0b3195.pth -o runs/l --gpus 8
    robustsam train --stage base --model-type vit_micro --data synthetic:2000 --image-size 128 -o runs/base
    robustsam train --method glesam --stage unet --data lqseg_train/ --sam-checkpoint sam_vit_l_0b3195.pth -o runs/g --gpus 8
    """
    method, unet_path, lora_rank, latent_scale = (settings.pop(key) for key in ("method", "unet_path", "lora_rank", "latent_scale"))
    require_output_dir(settings["output"])
    if gpus < 1 or nnodes < 1:
        raise InputError("--gpus and --nnodes must be at least 1")
    if method == "glesam":
        if write_safetensors:
            raise InputError("--safetensors: RobustSAM runs only (a GleSAM checkpoint keeps its enhancer settings in final.pth)")
        config = _glesam_config(settings, unet_path, lora_rank, latent_scale, resume)
    else:
        config = _robustsam_config(settings, resume)
    from train.launch import launch
    from train.worker import run_training

    if gpus == 1 and nnodes == 1:
        with no_leftover_folder(config.output), step_reporter(enabled=not no_progress) as report:
            final = run_training(config, resume, report)
        click.echo(f"wrote {final}")
        if write_safetensors:
            _write_safetensors(Path(final))
        return
    with no_leftover_folder(config.output):
        status = launch(config, processes=gpus, resume=resume, nnodes=nnodes, node_rank=node_rank,
                        master_addr=master_addr, master_port=master_port,
                        worker="train.worker" if no_progress else "robustsam_cli.train_worker")
    if status != 0:
        raise click.ClickException(f"torchrun workers failed (exit status {status})")
    click.echo(f"wrote {Path(config.output) / 'final.pth'}")
    if write_safetensors:
        _write_safetensors(Path(config.output) / "final.pth")


def _robustsam_config(settings: dict, resume: Optional[str]) -> TrainConfig:
    """The checked configuration of a RobustSAM run (train/trainer.py), the built-in model filled in."""
    if settings["stage"] not in STAGES:
        raise InputError(f"--stage {settings['stage']}: a GleSAM stage; add --method glesam")
    from train.data import open_dataset
    from train.trainer import check_config

    builtin = [key for key in ("checkpoint", "sam_checkpoint") if is_default_name(settings[key])]
    if settings["checkpoint"] is None and settings["sam_checkpoint"] is None and resume is None and settings["stage"] == "robust":
        builtin = ["checkpoint"]  # nothing to start from: the built-in model
    for key in builtin:
        settings[key] = str(builtin_checkpoint())
    config = TrainConfig(**settings)
    _check_resume(resume)
    if builtin:
        # Bad settings or data fail first, in one line; then the notice.
        check_config(config)
        if config.degrade == "online":
            open_dataset(config.data, split=config.split, image_dir=config.image_dir, size=config.image_size)
        announce_builtin()
    return config


def _glesam_config(settings: dict, unet_path: Optional[str], lora_rank: int, latent_scale: float,
                   resume: Optional[str]) -> "GleSamTrainConfig":
    """`--method glesam`: the checked configuration of one GleSAM stage (train/glesam.py)."""
    from train.glesam import GleSamTrainConfig, check_glesam_config

    stage = "unet" if settings["stage"] == "robust" else settings["stage"]
    # --level given: that LQSeg level (1..3); left out: LQSeg's training mix of rates, as published
    level = settings["level"] if click.get_current_context().get_parameter_source("level") != ParameterSource.DEFAULT else None
    sam = settings["sam_checkpoint"] or settings["checkpoint"] if stage == "unet" else None
    builtin = stage == "unet" and (sam is None or is_default_name(sam))
    config = GleSamTrainConfig(
        data=settings["data"], output=settings["output"], stage=stage,
        sam_checkpoint=str(builtin_checkpoint()) if builtin else sam,
        checkpoint=settings["checkpoint"] if stage == "decoder" else None, unet=unet_path, lora_rank=lora_rank,
        lora_alpha=8.0, feature_weight=latent_scale, image_size=settings["image_size"], level=level,
        prompt=settings["prompt"], num_points=settings["num_points"], lr=settings["lr"], epochs=settings["epochs"],
        max_steps=settings["max_steps"], batch_size=settings["batch_size"], seed=settings["seed"],
        save_every=settings["save_every"], log_every=settings["log_every"], device=settings["device"],
    )
    check_glesam_config(config)
    _check_resume(resume)
    if builtin and resume is None:  # a resumed run continues the SAM its checkpoint holds
        announce_builtin()
    return config


def _check_resume(resume: Optional[str]) -> None:
    if resume is not None and not Path(resume).is_file():
        raise InputError(f"{resume}: no such checkpoint to resume")


def _write_safetensors(final: Path) -> None:
    """final.safetensors beside `final`: its model weights (final.pth keeps what --resume needs)."""
    from core.deploy.weights import export_weights

    path, model_type, count = export_weights(final, final.with_suffix(".safetensors"))
    click.echo(f"wrote {path} ({model_type}, {count} tensors)")

