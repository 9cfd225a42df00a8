"""safetensors checkpoints: written by export and train, read wherever a .pth is read."""

from __future__ import annotations

from pathlib import Path

import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from core import build_robustsam
from core.deploy.weights import read_weights_metadata, save_weights
from core.model.checkpoint import read_state_dict
from core.model.default_model import DEFAULT_CHECKPOINT
from robustsam_cli.main import cli


def test_round_trip_equals_the_pth_bit_for_bit(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    result = CliRunner().invoke(cli, ["export", "--checkpoint", str(DEFAULT_CHECKPOINT), "-o", str(target)])
    assert result.exit_code == 0, result.output
    expected, actual = read_state_dict(DEFAULT_CHECKPOINT), read_state_dict(target)
    assert set(actual) == set(expected)
    for key, value in expected.items():
        assert actual[key].dtype == value.dtype and torch.equal(actual[key], value), key
    model = build_robustsam(None, target)
    assert model.model_type == "vit_micro_p8"


def test_metadata_records_type_and_split(tmp_path: Path) -> None:
    state = read_state_dict(DEFAULT_CHECKPOINT)
    robust_only = {key: value for key, value in state.items() if ".fourier_" in key or "custom_" in key or "robust_mlp" in key}
    save_weights(state, tmp_path / "full.safetensors", "vit_micro_p8")
    save_weights(robust_only, tmp_path / "robust.safetensors", "vit_micro_p8")
    full = read_weights_metadata(tmp_path / "full.safetensors")
    assert full["model_type"] == "vit_micro_p8" and full["contents"] == "RobustSAM"
    assert int(full["sam_tensors"]) + int(full["robust_tensors"]) == len(state) and int(full["robust_tensors"]) == len(robust_only)
    assert read_weights_metadata(tmp_path / "robust.safetensors")["contents"] == "robust modules only"
    shown = CliRunner().invoke(cli, ["info", str(tmp_path / "full.safetensors")])
    assert shown.exit_code == 0 and "vit_micro_p8, RobustSAM" in shown.output and "contents RobustSAM" in shown.output


def test_merge_writes_safetensors(tmp_path: Path) -> None:
    state = read_state_dict(DEFAULT_CHECKPOINT)
    robust = {k: v for k, v in state.items() if k.startswith("mask_decoder.") and ("fourier" in k or "custom_" in k or "robust_mlp" in k)}
    sam = {k: v for k, v in state.items() if k not in robust}
    torch.save(robust, tmp_path / "robust.pth")
    save_weights(sam, tmp_path / "sam.safetensors", "vit_micro_p8")  # a SAM checkpoint read as .safetensors too
    target = tmp_path / "merged.safetensors"
    result = CliRunner().invoke(cli, ["export", "--robust", str(tmp_path / "robust.pth"), "--sam",
                                      str(tmp_path / "sam.safetensors"), "-o", str(target)])
    assert result.exit_code == 0, result.output
    merged = read_state_dict(target)
    assert all(torch.equal(merged[key], value) for key, value in state.items())


def test_wrong_keys_is_one_error_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    save_file({"not.a.model.key": torch.zeros(3)}, bad)
    for command in (["info", str(bad)], ["segment", str(tmp_path), "-o", str(tmp_path / "out"), "--checkpoint", str(bad)]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert lines[-1].startswith("Error: ") and str(bad) in lines[-1]
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 7)
    result = CliRunner().invoke(cli, ["info", str(corrupt)])
    assert result.exit_code == 2 and "not a safetensors checkpoint" in result.output


def test_train_writes_final_safetensors(tmp_path: Path) -> None:
    output = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "train", "--data", "synthetic:4", "-o", str(output), "--image-size", "64", "--batch-size", "2",
        "--max-steps", "1", "--val-every", "0", "--device", "cpu", "--no-progress", "--safetensors",
    ])
    assert result.exit_code == 0, result.output
    trained = torch.load(output / "final.pth", weights_only=True)["model"]
    weights = read_state_dict(output / "final.safetensors")
    assert set(weights) == set(trained) and all(torch.equal(weights[key], trained[key]) for key in trained)
    assert read_weights_metadata(output / "final.safetensors")["model_type"] == "vit_micro_p8"
