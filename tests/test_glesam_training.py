"""GleSAM training under RobustSAM's rules (train.loop): exact resume equals an uninterrupted run in both
stages, a 2-process gloo run through the CLI ends with bit-identical ranks, checkpoints are GleSAM
checkpoints with the training state, progress lines match log.jsonl, and bad resume files are one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from core.glesam import GleSam  # noqa: E402
from core.inference.loading import open_model  # noqa: E402
from core.model.default_model import DEFAULT_CHECKPOINT  # noqa: E402
from robustsam_cli.main import cli  # noqa: E402
from tests.conftest import whole_and_resumed  # noqa: E402
from tests.test_train import free_port, records  # noqa: E402
from train.glesam import GleSamTrainConfig, GleSamTrainer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = dict(image_size=64, lora_rank=4, width=16, batch_size=2, log_every=1, device="cpu")
CLI_SMALL = ["--method", "glesam", "--image-size", "64", "--lora-rank", "4", "--batch-size", "2", "--log-every", "1",
             "--device", "cpu"]


@pytest.fixture(scope="module")
def unet_checkpoint(tmp_path_factory, one_thread) -> Path:
    """Stage unet, one step on the built-in tiny SAM: where stage decoder starts."""
    output = tmp_path_factory.mktemp("unet")
    config = GleSamTrainConfig(data="synthetic:2", output=str(output), stage="unet",
                               sam_checkpoint=str(DEFAULT_CHECKPOINT), max_steps=1, save_every=0, **SMALL)
    return GleSamTrainer(config).run()


@pytest.mark.parametrize("stage", ["unet", "decoder"])
def test_resume_equals_uninterrupted_run(tmp_path: Path, unet_checkpoint: Path, stage: str) -> None:
    start = {"sam_checkpoint": str(DEFAULT_CHECKPOINT)} if stage == "unet" else {"checkpoint": str(unet_checkpoint)}
    # 3 steps an epoch: the resumed part crosses an epoch; a warmup still rising (unet) and StepLR
    # stepping every epoch (decoder) check the schedule's state; lr large enough that weights move
    # (the MSE-only objective: the released one's generator first moves at iteration 5, see test_glesam_objective)
    common = dict(data="synthetic:6", stage=stage, epochs=2, save_every=2, lr=1e-2, warmup=3, objective="mse", **start, **SMALL)
    whole, resumed, before = whole_and_resumed(GleSamTrainer, GleSamTrainConfig, tmp_path, **common)
    expected, got = whole.model.state_dict(), resumed.model.state_dict()
    assert any(not torch.equal(before[key], expected[key]) for key in expected), "training changed nothing"
    assert all(torch.equal(expected[key], got[key]) for key in expected)
    assert resumed.scheduler.state_dict() == whole.scheduler.state_dict()
    assert records(tmp_path / "second")[-1]["loss"] == records(tmp_path / "whole")[-1]["loss"]


def test_checkpoints_are_glesam_checkpoints_with_the_training_state(tmp_path: Path) -> None:
    config = GleSamTrainConfig(data="synthetic:4", output=str(tmp_path), stage="unet", sam_checkpoint=str(DEFAULT_CHECKPOINT),
                               max_steps=2, save_every=1, **SMALL)
    final = GleSamTrainer(config).run()
    assert {path.name for path in tmp_path.iterdir()} == {"log.jsonl", "checkpoint-0000001.pth", "checkpoint-0000002.pth", "final.pth"}
    saved = torch.load(final, weights_only=True)
    assert {"glesam", "sam", "unet", "optimizer", "scheduler", "step", "rng", "config"} <= set(saved)
    assert saved["step"] == 2 and saved["config"]["method"] == "glesam" and saved["config"]["stage"] == "unet"
    model = open_model(final)
    assert isinstance(model, GleSam)
    assert all(torch.equal(value, saved["unet"][key]) for key, value in model.enhancer.unet.state_dict().items())


def test_two_process_gloo_run_through_the_cli_ends_with_identical_ranks(tmp_path: Path) -> None:
    output = tmp_path / "ddp"
    result = CliRunner().invoke(cli, ["train", *CLI_SMALL, "--stage", "unet", "--data", "synthetic:8", "--max-steps", "2",
                                      "--gpus", "2", "--master-port", str(free_port()), "--no-progress", "-o", str(output)])
    assert result.exit_code == 0, result.output
    log = records(output)
    assert [r["step"] for r in log if "mse" in r] == [1, 2], "only rank 0 writes the log"
    assert log[-1] == {"step": 2, "ranks_identical": True}
    assert {p.name for p in output.iterdir()} == {"log.jsonl", "final.pth", "launch-config.json"}
    saved = torch.load(output / "final.pth", weights_only=True)
    assert saved["step"] == 2 and saved["config"]["method"] == "glesam"
    assert isinstance(open_model(output / "final.pth"), GleSam)


def test_cli_progress_lines_and_resume(tmp_path: Path) -> None:
    common = ["train", *CLI_SMALL, "--stage", "unet", "--data", "synthetic:4", "--save-every", "1"]
    first = CliRunner().invoke(cli, common + ["--max-steps", "1", "-o", str(tmp_path / "first")])
    assert first.exit_code == 0, first.output
    logged = records(tmp_path / "first")[0]
    shown = [line for line in first.output.splitlines() if line.startswith("train step")]
    terms = ("loss", "mse", "dm", "gen_gan", "mse_input", "guidance_loss", "fake_score", "classifier", "realism_real", "realism_fake")
    assert shown == [f"train step 1/1 {' '.join(f'{key} {logged[key]:.4f}' for key in terms)} | {logged['images_per_s']:.1f} img/s"]
    second = CliRunner().invoke(cli, common + ["--max-steps", "3", "--resume", str(tmp_path / "first" / "checkpoint-0000001.pth"),
                                               "--no-progress", "-o", str(tmp_path / "second")])
    assert second.exit_code == 0, second.output
    assert not any(line.startswith("train step") for line in second.output.splitlines())
    assert [r["step"] for r in records(tmp_path / "second")] == [2, 3]
    assert torch.load(tmp_path / "second" / "final.pth", weights_only=True)["step"] == 3


@pytest.mark.parametrize("which, message", [("robustsam", "not a checkpoint of a GleSAM run"),
                                            ("decoder", "not a checkpoint of GleSAM's stage unet")])
def test_a_wrong_resume_file_is_one_line_and_leaves_no_folder(tmp_path: Path, unet_checkpoint: Path, which: str,
                                                              message: str) -> None:
    if which == "robustsam":
        resume = DEFAULT_CHECKPOINT
    else:  # a stage-decoder checkpoint where stage unet is trained
        resume = GleSamTrainer(GleSamTrainConfig(data="synthetic:2", output=str(tmp_path / "decoder"), stage="decoder",
                                                 checkpoint=str(unet_checkpoint), max_steps=1, save_every=0, **SMALL)).run()
    output = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", *CLI_SMALL, "--stage", "unet", "--data", "synthetic:2", "--resume", str(resume),
                                      "-o", str(output)])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not output.exists()
