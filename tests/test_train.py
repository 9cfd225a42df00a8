"""robustsam train: loss goes down, frozen weights stay put, exact resume, checkpoints, a 2-process gloo run."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from core import build_robustsam
from core.model.checkpoint import is_robust_key
from robustsam_cli.main import cli
from train.config import TrainConfig
from train.trainer import Trainer

from .conftest import whole_and_resumed

SMALL = dict(image_size=64, prompt="box", val_every=0, log_every=1, device="cpu", lr=1e-3)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sam_file(tmp_path_factory, micro_state) -> Path:
    """The vit_micro test weights without the robust modules: a plain SAM checkpoint."""
    path = tmp_path_factory.mktemp("sam") / "sam_micro.pth"
    torch.save({k: v for k, v in micro_state.items() if not is_robust_key(k)}, path)
    return path


def records(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]


def test_short_run_lowers_loss_and_leaves_frozen_weights_bit_identical(tmp_path, sam_file):
    config = TrainConfig(data="synthetic:4", output=str(tmp_path), sam_checkpoint=str(sam_file), batch_size=4,
                         max_steps=12, epochs=100, save_every=0, **SMALL)
    trainer = Trainer(config)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    reports = []
    trainer.run(reports.append)
    after = trainer.model.state_dict()
    frozen = [k for k in before if not is_robust_key(k)]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in before if is_robust_key(k))

    losses = [r["total"] for r in records(tmp_path) if "total" in r]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3
    assert {"mfc", "tc", "focal", "dice", "grad_norm"} <= set(records(tmp_path)[0])
    # The caller hears of every step, with the same losses the log keeps.
    assert [(r.step, r.total, r.logged) for r in reports] == [(step, 12, True) for step in range(1, 13)]
    assert [r.losses["total"] for r in reports] == losses


def test_checkpoint_holds_robust_modules_and_loads_on_sam(tmp_path, sam_file):
    config = TrainConfig(data="synthetic:4", output=str(tmp_path), sam_checkpoint=str(sam_file), batch_size=2,
                         max_steps=2, epochs=1, save_every=1, **SMALL)
    final = Trainer(config).run()
    saved = torch.load(final, weights_only=True)
    assert set(saved) == {"model", "model_type", "optimizer", "scheduler", "step", "rng", "config"}
    assert saved["step"] == 2 and (tmp_path / "checkpoint-0000001.pth").is_file()
    assert saved["model"] and all(is_robust_key(k) for k in saved["model"])
    model = build_robustsam(None, final, sam_checkpoint=sam_file)
    token = saved["model"]["mask_decoder.custom_robust_token.weight"]
    assert torch.equal(model.mask_decoder.custom_robust_token.weight, token)

    full = tmp_path / "full.pth"
    result = CliRunner().invoke(cli, ["export", "--robust", str(final), "--sam", str(sam_file), "-o", str(full)])
    assert result.exit_code == 0, result.output
    exported = build_robustsam(None, full)
    for key, value in model.state_dict().items():
        assert torch.equal(exported.state_dict()[key], value), key


@pytest.mark.parametrize("stage", ["robust", "base"])
def test_resume_equals_uninterrupted_run(tmp_path, sam_file, stage):
    start = {"sam_checkpoint": str(sam_file)} if stage == "robust" else {"model_type": "vit_micro"}
    common = dict(data="synthetic:6", stage=stage, batch_size=2, accumulate=2, epochs=3, lr_step=1, save_every=2,
                  prompt="mixed", **start, **{k: v for k, v in SMALL.items() if k != "prompt"})
    whole, resumed, _ = whole_and_resumed(Trainer, TrainConfig, tmp_path, **common)
    expected, got = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert resumed.scheduler.state_dict() == whole.scheduler.state_dict()
    assert records(tmp_path / "second")[-1]["total"] == records(tmp_path / "whole")[-1]["total"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_gloo_run_through_torchrun(tmp_path, sam_file):
    output = tmp_path / "ddp"
    result = CliRunner().invoke(cli, [
        "train", "--data", "synthetic:8", "--sam-checkpoint", str(sam_file), "-o", str(output), "--image-size", "64",
        "--batch-size", "2", "--max-steps", "3", "--prompt", "mixed", "--val-every", "0", "--log-every", "1",
        "--device", "cpu", "--gpus", "2", "--master-port", str(free_port()), "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    log = records(output)
    assert [r["step"] for r in log if "total" in r] == [1, 2, 3], "only rank 0 writes the log"
    assert log[-1] == {"step": 3, "ranks_identical": True}
    saved = torch.load(output / "final.pth", weights_only=True)
    assert saved["step"] == 3 and saved["config"]["batch_size"] == 2
    assert {p.name for p in output.iterdir()} == {"log.jsonl", "final.pth", "launch-config.json"}


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--data", "synthetic:zero"], "expected synthetic:N"),
        (["--data", "nowhere/"], "not a dataset"),
        (["--data", "synthetic:4", "--stage", "base"], "--model-type"),
        (["--data", "synthetic:4", "--checkpoint", "missing.pth"], "missing.pth: no such checkpoint"),
        (["--data", "synthetic:4", "--model-type", "vit_micro", "--stage", "base", "--batch-size", "8"],
         "fewer than one step"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, arguments, message):
    result = CliRunner().invoke(cli, ["train", "-o", str(tmp_path / "run"), "--device", "cpu", *arguments])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
