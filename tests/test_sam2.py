"""SAM 2 as a backbone on the micro size: checkpoints in Meta's layout opened by `open_predictor`, type
inference, the robust path, bad input (one line naming the file, exit 2) and `segment` on SAM 2."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("sam2")
from core.errors import CheckpointError  # noqa: E402
from core.inference import open_predictor  # noqa: E402
from core.model.checkpoint import RobustModulesUninitialized  # noqa: E402
from core.model.synthetic_weights import synthetic_state_dict  # noqa: E402
from core.sam2 import Sam2Predictor, build_sam2_model, infer_sam2_type, is_sam2_robust_key  # noqa: E402
from robustsam_cli.main import cli  # noqa: E402

MICRO = "sam2.1_hiera_micro"
BOX = np.array([20.0, 15.0, 120.0, 80.0])


@pytest.fixture(scope="module")
def micro2_state() -> dict[str, torch.Tensor]:
    model = build_sam2_model(MICRO)
    return dict(synthetic_state_dict({key: value.shape for key, value in model.state_dict().items()}))


@pytest.fixture(scope="module")
def micro2_checkpoint(tmp_path_factory, micro2_state) -> Path:
    """A RobustSAM2 micro checkpoint in Meta's layout, {"model": state_dict}."""
    path = tmp_path_factory.mktemp("sam2") / "robustsam2_micro.pt"
    torch.save({"model": micro2_state}, path)
    return path


@pytest.fixture(scope="module")
def plain2_checkpoint(tmp_path_factory, micro2_state) -> Path:
    """A plain SAM 2.1 micro checkpoint: no robust modules."""
    path = tmp_path_factory.mktemp("sam2") / "sam2_micro.pt"
    torch.save({"model": {k: v for k, v in micro2_state.items() if not is_sam2_robust_key(k)}}, path)
    return path


def test_type_inferred_from_keys(micro2_state) -> None:
    assert infer_sam2_type(micro2_state, "x.pt") == MICRO
    tiny_21 = build_sam2_model("sam2.1_hiera_t").state_dict()
    tiny_20 = build_sam2_model("sam2_hiera_t").state_dict()
    assert infer_sam2_type(tiny_21, "x.pt") == "sam2.1_hiera_t"
    assert infer_sam2_type(tiny_20, "x.pt") == "sam2_hiera_t"


def test_open_predictor_robust_and_sam2_paths(micro2_checkpoint, plain2_checkpoint, image) -> None:
    robust = open_predictor(micro2_checkpoint)
    assert isinstance(robust, Sam2Predictor) and robust.robust and robust.model.model_type == MICRO
    plain = open_predictor(micro2_checkpoint, robust=False)
    with pytest.warns(RobustModulesUninitialized):
        untrained = open_predictor(plain2_checkpoint, robust=False)
    results = []
    for predictor in (robust, plain, untrained):
        predictor.set_image(image)
        results.append(predictor.predict(box=BOX, multimask_output=True))
    # the SAM 2 path ignores the robust modules; the robust path uses them
    np.testing.assert_array_equal(results[1][2], results[2][2])
    assert np.abs(results[0][2] - results[1][2]).max() > 1e-3
    masks, scores, logits = results[0]
    assert masks.shape == (3, *image.shape[:2]) and scores.shape == (3,) and logits.shape == (3, 64, 64)


def test_robust_path_reads_the_robust_token(micro2_checkpoint, image) -> None:
    """Mutation guard: changing the robust output token changes the robust path, not SAM 2's."""
    predictor = open_predictor(micro2_checkpoint)
    predictor.set_image(image)
    before = predictor.predict(box=BOX)[2]
    with torch.no_grad():
        predictor.model.sam_mask_decoder.custom_robust_token.weight.mul_(2)
    assert np.abs(predictor.predict(box=BOX)[2] - before).max() > 1e-4
    predictor.robust = False
    sam2_path = predictor.predict(box=BOX)[2]
    with torch.no_grad():
        predictor.model.sam_mask_decoder.custom_robust_token.weight.mul_(3)
    np.testing.assert_array_equal(predictor.predict(box=BOX)[2], sam2_path)


def test_batch_api_matches_single_images(micro2_checkpoint, image) -> None:
    predictor = open_predictor(micro2_checkpoint)
    images = [image, np.ascontiguousarray(image[:, ::-1])]
    predictor.set_image_batch(images)
    batched = predictor.predict_batch(box_batch=[BOX, BOX], multimask_output=False)
    for index, single_image in enumerate(images):
        predictor.set_image(single_image)
        single = predictor.predict(box=BOX, multimask_output=False)
        for got, want in zip(batched, single):
            np.testing.assert_allclose(got[index], want, rtol=1e-4, atol=1e-5)


def _bad(path: Path, match: str, **kwargs) -> None:
    with pytest.raises(CheckpointError, match=match) as caught:
        open_predictor(path, **kwargs)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_bad_checkpoints(tmp_path, micro2_state, micro2_checkpoint, micro_checkpoint) -> None:
    _bad(micro_checkpoint, "not SAM 2", model_type=MICRO)
    _bad(micro2_checkpoint, "a SAM 2 checkpoint, not vit_micro", model_type="vit_micro")
    _bad(micro2_checkpoint, "sam2.1_hiera_t does not have", model_type="sam2.1_hiera_t")
    missing = tmp_path / "missing.pt"
    torch.save({"model": {k: v for k, v in micro2_state.items() if k != "sam_mask_decoder.iou_token.weight"}}, missing)
    _bad(missing, "SAM 2 weights missing")
    partial = tmp_path / "partial_robust.pt"
    torch.save({"model": {k: v for k, v in micro2_state.items() if "robust_mlp" not in k}}, partial)
    _bad(partial, "robust-module weights missing")


def test_cli_bad_checkpoint_exits_2(micro_checkpoint, tmp_path) -> None:
    result = CliRunner().invoke(cli, ["segment", str(tmp_path), "--checkpoint", str(micro_checkpoint),
                                      "--model-type", MICRO, "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert str(micro_checkpoint) in result.output


def test_segment_with_sam2_checkpoint(micro2_checkpoint, tmp_path) -> None:
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        result = CliRunner().invoke(cli, ["segment", "examples/images/fog.png", "--prompts", "examples/boxes.json",
                                          "--checkpoint", str(micro2_checkpoint), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in (out / "fog").glob("*.png")), result.output


def test_info_and_safetensors_export(micro2_checkpoint, tmp_path, image) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["info", str(micro2_checkpoint)])
    assert result.exit_code == 0, result.output
    assert f"{MICRO}, RobustSAM" in result.output and "sam_mask_decoder.custom_robust_token" in result.output
    target = tmp_path / "robustsam2_micro.safetensors"
    result = runner.invoke(cli, ["export", "--checkpoint", str(micro2_checkpoint), "-o", str(target)])
    assert result.exit_code == 0, result.output
    exported, original = open_predictor(target), open_predictor(micro2_checkpoint)
    for predictor in (exported, original):
        predictor.set_image(image)
    np.testing.assert_array_equal(exported.predict(box=BOX)[2], original.predict(box=BOX)[2])
    result = runner.invoke(cli, ["export", "--checkpoint", str(micro2_checkpoint), "--onnx", str(tmp_path / "onnx")])
    assert result.exit_code == 2 and "ONNX export covers SAM (ViT) models only" in result.output


def test_eval_sam2_beside_sam(micro2_checkpoint, micro_checkpoint, tmp_path) -> None:
    """`eval` runs RobustSAM2, the SAM 2 path and a SAM 1 model side by side in one table."""
    import json

    import imageio.v3 as iio

    split = tmp_path / "data" / "MSRA10K"
    for folder in ("clear", "masks", "dark"):
        (split / folder).mkdir(parents=True)
    for index in range(2):
        image = np.full((96, 128, 3), 40, np.uint8)
        mask = np.zeros((96, 128), bool)
        mask[10 + 10 * index : 60, 20:80] = True
        image[mask] = (200, 60, 60)
        iio.imwrite(split / "clear" / f"im{index}.png", image)
        iio.imwrite(split / "dark" / f"im{index}.png", image // 2)
        np.save(split / "masks" / f"im{index}.npy", mask[None])
    out = tmp_path / "eval"
    result = CliRunner().invoke(cli, ["eval", "--data", str(split), "--prompt", "box", "--out", str(out),
                                      "--model", f"robustsam2={micro2_checkpoint}", "--model", f"sam2={micro2_checkpoint}:sam",
                                      "--model", f"robustsam={micro_checkpoint}"])
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "results.json").read_text())["tables"][0]["rows"]
    for row in rows:
        values = {name: row["values"][name]["iou"] for name in ("robustsam2", "sam2", "robustsam")}
        assert all(0.0 <= value <= 1.0 for value in values.values()), values
        assert values["robustsam2"] != values["sam2"]


def test_train_robustsam_on_frozen_sam2(plain2_checkpoint, micro2_state, tmp_path) -> None:
    """train --method robustsam on a SAM 2 checkpoint keeps only the robust modules; merged with the SAM 2
    weights by export, the result segments and evaluates."""
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(cli, ["train", "--sam-checkpoint", str(plain2_checkpoint), "--data", "synthetic:4",
                                 "--image-size", "64", "--batch-size", "2", "--max-steps", "2", "--val-every", "0",
                                 "-o", str(run)])
    assert result.exit_code == 0, result.output
    saved = torch.load(run / "final.pth", weights_only=True)
    assert saved["model_type"] == MICRO and saved["model"] and all(map(is_sam2_robust_key, saved["model"]))
    merged = tmp_path / "robustsam2.safetensors"
    result = runner.invoke(cli, ["export", "--robust", str(run / "final.pth"), "--sam", str(plain2_checkpoint), "-o", str(merged)])
    assert result.exit_code == 0, result.output
    model = open_predictor(merged).model
    for key, value in model.state_dict().items():
        expected = saved["model"][key] if is_sam2_robust_key(key) else micro2_state[key]
        torch.testing.assert_close(value, expected, rtol=0, atol=0, msg=key)  # SAM 2 itself stayed frozen
    out = tmp_path / "out"
    result = runner.invoke(cli, ["segment", "examples/images/fog.png", "--prompts", "examples/boxes.json",
                                 "--checkpoint", str(run / "final.pth"), "--sam-checkpoint", str(plain2_checkpoint), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert list((out / "fog").glob("*.png"))
