"""Building models and reading checkpoints: released layouts, SAM-only, robust-only, and errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from core import CheckpointError, RobustModulesUninitialized, build_robustsam, expected_shapes
from core.model.checkpoint import is_robust_key, read_state_dict, summarize_checkpoint
from core.model.synthetic_weights import synthetic_tensor

from .conftest import DATA, load_manifest


@pytest.mark.parametrize("model_type", ["vit_b", "vit_l", "vit_h"])
def test_released_keys_shapes_and_order(model_type: str) -> None:
    manifest = load_manifest(model_type)
    shapes = expected_shapes(model_type)
    assert list(shapes) == list(manifest)
    assert all(shapes[key] == tuple(shape) for key, shape in manifest.items())
    assert sum(is_robust_key(key) for key in manifest) == 89


def test_synthetic_weights_match_shared_definition() -> None:
    fingerprints = json.loads((DATA / "synthetic_fingerprints.json").read_text())
    for key, expected in fingerprints.items():
        tensor = synthetic_tensor(key, expected["shape"]).double()
        assert math.isclose(tensor.sum().item(), expected["sum"], rel_tol=1e-9, abs_tol=1e-9), key
        assert math.isclose(tensor.abs().sum().item(), expected["abs_sum"], rel_tol=1e-9, abs_tol=1e-9), key
        assert tensor.flatten()[0].item() == pytest.approx(expected["first"], rel=1e-9, abs=1e-12), key


def test_synthetic_weights_equal_shared_generator_when_present() -> None:
    shared = Path(__file__).resolve().parents[2] / "shared" / "parity" / "synthetic_weights.py"
    if not shared.is_file():
        pytest.skip("../shared/parity is not beside this checkout")
    namespace: dict = {}
    exec(compile(shared.read_text(), str(shared), "exec"), namespace)
    manifest = load_manifest("vit_b")
    for key in list(manifest)[::7]:
        ours, theirs = synthetic_tensor(key, manifest[key]), namespace["synthetic_tensor"](key, manifest[key])
        assert ours.dtype == theirs.dtype and torch.equal(ours, theirs), key


def assert_same_weights(model, state: dict[str, torch.Tensor]) -> None:
    own = model.state_dict()
    for key, value in state.items():
        assert torch.equal(own[key], value), key


def test_full_checkpoint_loads_strictly_and_infers_type(micro_checkpoint, micro_state) -> None:
    model = build_robustsam(None, micro_checkpoint)
    assert model.model_type == "vit_micro"
    assert_same_weights(model, micro_state)


def test_module_prefix_and_wrapper_are_unwrapped(tmp_path, micro_state) -> None:
    path = tmp_path / "ddp.pth"
    torch.save({"model": {f"module.{k}": v for k, v in micro_state.items()}, "step": 3}, path)
    assert_same_weights(build_robustsam("vit_micro", path), micro_state)


def test_sam_only_checkpoint_warns_and_keeps_fresh_robust_modules(tmp_path, micro_state) -> None:
    path = tmp_path / "sam.pth"
    torch.save({k: v for k, v in micro_state.items() if not is_robust_key(k)}, path)
    with pytest.warns(RobustModulesUninitialized, match="sam.pth"):
        model = build_robustsam(None, path)
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in micro_state.items() if not is_robust_key(k))
    assert not torch.equal(own["mask_decoder.robust_mlp.layers.0.weight"], micro_state["mask_decoder.robust_mlp.layers.0.weight"])


def test_robust_only_checkpoint_on_top_of_sam(tmp_path, micro_state) -> None:
    sam, robust = tmp_path / "sam.pth", tmp_path / "robust.pth"
    torch.save({k: v for k, v in micro_state.items() if not is_robust_key(k)}, sam)
    torch.save({"model": {k: v for k, v in micro_state.items() if is_robust_key(k)}}, robust)
    assert_same_weights(build_robustsam(None, robust, sam_checkpoint=sam), micro_state)
    with pytest.raises(CheckpointError, match="robust.pth: holds the robust modules only"):
        build_robustsam(None, robust)


def test_wrong_model_type_names_file_keys_and_actual_type(micro_checkpoint) -> None:
    with pytest.raises(CheckpointError) as error:
        build_robustsam("vit_tiny", micro_checkpoint)
    message = str(error.value)
    assert str(micro_checkpoint) in message and "vit_micro checkpoint" in message
    assert "image_encoder.pos_embed (1, 8, 8, 32) != (1, 16, 16, 96)" in message
    assert "\n" not in message


def test_missing_keys_are_named(tmp_path, micro_state) -> None:
    path = tmp_path / "partial.pth"
    torch.save({k: v for k, v in micro_state.items() if "fourier_mask_features" not in k}, path)
    with pytest.raises(CheckpointError, match=r"partial.pth: lacks robust-module weights: \d+ keys: mask_decoder.fourier_mask_features"):
        build_robustsam(None, path)


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b""])
def test_not_a_checkpoint(tmp_path, content: bytes) -> None:
    path = tmp_path / "junk.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="junk.pth: not a PyTorch checkpoint"):
        read_state_dict(path)


def test_missing_file_and_non_tensor_content(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="absent.pth: no such checkpoint file"):
        build_robustsam(None, tmp_path / "absent.pth")
    path = tmp_path / "numbers.pth"
    torch.save({"a": 1}, path)
    with pytest.raises(CheckpointError, match="numbers.pth: not a state dict of named tensors"):
        read_state_dict(path)


def test_summary_counts_parameters(micro_checkpoint, micro_state) -> None:
    summary = summarize_checkpoint(micro_checkpoint)
    counted = [v.numel() for k, v in micro_state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    robust = [v.numel() for k, v in micro_state.items() if is_robust_key(k) and not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert summary.model_type == "vit_micro" and summary.kind == "RobustSAM"
    assert summary.robust_parameters == sum(robust)
    assert summary.sam_parameters == sum(counted) - sum(robust)
    assert summary.missing_modules == []


def test_robust_modules_and_sam_checkpoint_take_the_type_of_the_sam_checkpoint(tmp_path) -> None:
    """Robust modules do not depend on the patch size: only the SAM checkpoint tells vit_micro_p8 from vit_micro."""
    state = {key: synthetic_tensor(key, shape) for key, shape in expected_shapes("vit_micro_p8").items()}
    robust, sam = tmp_path / "robust.pth", tmp_path / "sam.pth"
    torch.save({k: v for k, v in state.items() if is_robust_key(k)}, robust)
    torch.save({k: v for k, v in state.items() if not is_robust_key(k)}, sam)
    model = build_robustsam(None, robust, sam_checkpoint=sam)
    assert model.model_type == "vit_micro_p8"
    assert_same_weights(model, state)
