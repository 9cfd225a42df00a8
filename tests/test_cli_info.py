"""`robustsam --version` and `robustsam info`."""

from __future__ import annotations

import torch
from click.testing import CliRunner

from core.model.checkpoint import is_robust_key
from core.model.synthetic_weights import synthetic_state_dict
from robustsam_cli.main import cli

from .conftest import load_manifest


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0 and "robustsam, version 0.1.0" in result.output


def test_info_on_synthetic_vit_b_checkpoint(tmp_path) -> None:
    state = synthetic_state_dict(load_manifest("vit_b"))
    path = tmp_path / "robustsam_checkpoint_b.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    result = run("info", str(path))
    assert result.exit_code == 0, result.output
    assert "vit_b, RobustSAM" in result.output
    robust = sum(v.numel() for k, v in state.items() if is_robust_key(k) and "running" not in k and "num_batches" not in k)
    assert f"robust {robust:,}" in result.output
    assert "fourier_first_layer_features" in result.output and " no " not in result.output


def test_info_reports_missing_robust_modules(tmp_path, micro_state) -> None:
    path = tmp_path / "sam_micro.pth"
    torch.save({k: v for k, v in micro_state.items() if not is_robust_key(k)}, path)
    result = run("info", str(path))
    assert result.exit_code == 0
    assert "vit_micro, SAM only" in result.output and "robust 0" in result.output
    assert result.output.count(" no ") == 6


def test_info_errors_are_one_line_with_exit_code_2(tmp_path, micro_checkpoint) -> None:
    missing = run("info", str(tmp_path / "nothing.pth"))
    assert missing.exit_code == 2
    assert missing.output.strip() == f"Error: {tmp_path / 'nothing.pth'}: no such checkpoint file"
    wrong = run("info", str(micro_checkpoint), "--model-type", "vit_b")
    assert wrong.exit_code == 2 and len(wrong.output.strip().splitlines()) == 1
    assert "does not fit model type vit_b (it is a vit_micro checkpoint)" in wrong.output
