"""ONNX export and the onnxruntime predictor against the torch model (built-in vit_micro_p8; one vit_b case)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from core import RobustPredictor, build_robustsam
from core.deploy import OnnxPredictor, export_onnx
from core.model.default_model import DEFAULT_CHECKPOINT, read_amg_defaults
from core.model.synthetic_weights import synthetic_state_dict
from robustsam_cli.main import cli

from .conftest import load_manifest, model_from_state

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# fp32 onnxruntime against torch: measured 2e-6 relative on the low-res logits (vit_micro and vit_b).
LOGIT_LIMIT = 1e-4
# A mask pixel may flip only where torch's logit lies this close to the threshold (a tie).
TIE_MARGIN = 1e-3


@pytest.fixture(scope="module")
def robust_dir(tmp_path_factory, one_thread) -> Path:
    """`robustsam export --onnx --quantize` of the built-in model."""
    folder = tmp_path_factory.mktemp("onnx") / "robust"
    result = CliRunner().invoke(cli, ["export", "--onnx", str(folder), "--quantize"])
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture(scope="module")
def sam_dir(tmp_path_factory, one_thread) -> Path:
    folder = tmp_path_factory.mktemp("onnx") / "sam"
    export_onnx(build_robustsam(None, DEFAULT_CHECKPOINT), folder, robust=False)
    return folder


def prompt_cases(size: tuple[int, int]) -> dict[str, dict[str, np.ndarray]]:
    h, w = size
    return {
        "box": {"box": np.array([w * 0.2, h * 0.15, w * 0.7, h * 0.8])},
        "points": {"point_coords": np.array([[w * 0.4, h * 0.5], [w * 0.8, h * 0.2]]), "point_labels": np.array([1, 0])},
        "box+point": {"point_coords": np.array([[w * 0.5, h * 0.5]]), "point_labels": np.array([1]),
                      "box": np.array([w * 0.2, h * 0.15, w * 0.7, h * 0.8])},
    }


def check_predictor(onnx: OnnxPredictor, torch_predictor: RobustPredictor, image: np.ndarray) -> None:
    onnx.set_image(image)
    torch_predictor.set_image(image)
    for name, prompt in prompt_cases(image.shape[:2]).items():
        for multimask in (True, False):
            reference = torch_predictor.predict(**prompt, multimask_output=multimask)
            outputs = onnx.predict(**prompt, multimask_output=multimask)
            compare(outputs, reference, torch_predictor, prompt, multimask)
            with_mask = dict(prompt, mask_input=reference[2][:1])
            compare(onnx.predict(**with_mask, multimask_output=multimask),
                    torch_predictor.predict(**with_mask, multimask_output=multimask), torch_predictor, with_mask, multimask)


def compare(outputs, reference, torch_predictor: RobustPredictor, prompt, multimask: bool) -> None:
    (masks, iou, low_res), (ref_masks, ref_iou, ref_low_res) = outputs, reference
    assert masks.shape == ref_masks.shape and iou.shape == ref_iou.shape and low_res.shape == ref_low_res.shape
    relative = float(np.abs(low_res - ref_low_res).max() / np.abs(ref_low_res).max())
    assert relative < LOGIT_LIMIT, (prompt, multimask, relative)
    np.testing.assert_allclose(iou, ref_iou, atol=1e-4)
    flipped = masks != ref_masks
    if flipped.any():
        logits = torch_predictor.predict(**prompt, multimask_output=multimask, return_logits=True)[0]
        assert np.abs(logits[flipped]).max() < TIE_MARGIN, "a mask pixel flipped away from the threshold"


def test_manifest_describes_the_export(robust_dir: Path) -> None:
    manifest = json.loads((robust_dir / "robustsam_onnx.json").read_text())
    assert (manifest["model_type"], manifest["mode"], manifest["opset"]) == ("vit_micro_p8", "robust", 18)
    decoder = {item["name"]: item["shape"] for item in manifest["decoder"]["inputs"]}
    assert list(decoder) == ["image_embeddings", "robust_features", "point_coords", "point_labels",
                             "mask_input", "has_mask_input", "orig_im_size"]
    assert isinstance(decoder["point_coords"][1], str) and decoder["point_coords"][1] == decoder["point_labels"][1]
    assert [item["name"] for item in manifest["decoder"]["outputs"]] == ["masks", "iou_predictions", "low_res_masks"]
    assert [item["name"] for item in manifest["encoder"]["outputs"]] == ["image_embeddings", "early_features", "robust_features"]
    assert manifest["quantized_decoder"]["file"] == "decoder_int8.onnx" and (robust_dir / "decoder_int8.onnx").is_file()
    assert manifest["amg_defaults"] == read_amg_defaults(DEFAULT_CHECKPOINT) != {}  # the built-in model's own settings travel


@pytest.mark.parametrize("robust", [True, False], ids=["robust", "sam"])
def test_onnx_predictor_matches_torch(robust: bool, robust_dir: Path, sam_dir: Path, image: np.ndarray) -> None:
    onnx = OnnxPredictor(robust_dir if robust else sam_dir, threads=1)
    check_predictor(onnx, RobustPredictor(build_robustsam(None, DEFAULT_CHECKPOINT), robust=robust), image)
    assert onnx.get_image_embedding().shape == (1, 64, 16, 16)


def test_int8_decoder_mask_iou(robust_dir: Path, image: np.ndarray, capsys) -> None:
    fp32, int8 = OnnxPredictor(robust_dir, threads=1), OnnxPredictor(robust_dir, quantized=True, threads=1)
    ious = []
    for predictor in (fp32, int8):
        predictor.set_image(image)
    for prompt in prompt_cases(image.shape[:2]).values():
        a = fp32.predict(**prompt, multimask_output=False)[0]
        b = int8.predict(**prompt, multimask_output=False)[0]
        ious.append((a & b).sum() / max((a | b).sum(), 1))
    with capsys.disabled():
        print(f"\nint8 decoder mask IoU against fp32 (built-in model): {', '.join(f'{iou:.3f}' for iou in ious)}")
    assert min(ious) > 0.8


def test_segment_onnx_backend_writes_the_torch_masks(robust_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    outputs = {}
    for backend in ("torch", "onnx"):
        outputs[backend] = tmp_path / backend
        extra = ["--onnx-dir", str(robust_dir)] if backend == "onnx" else []
        result = runner.invoke(cli, ["segment", str(EXAMPLES / "images"), "--prompts", str(EXAMPLES / "boxes.json"),
                                     "-o", str(outputs[backend]), "--backend", backend, *extra])
        assert result.exit_code == 0, result.output
    pngs = sorted(path.relative_to(outputs["torch"]) for path in outputs["torch"].rglob("*.png"))
    assert len(pngs) == 16
    for name in pngs:  # measured: every mask equal, no tie flipped
        assert (outputs["torch"] / name).read_bytes() == (outputs["onnx"] / name).read_bytes(), name
    for table in outputs["torch"].rglob("metadata.csv"):
        expected = np.genfromtxt(table, delimiter=",", names=True)
        actual = np.genfromtxt(outputs["onnx"] / table.relative_to(outputs["torch"]), delimiter=",", names=True)
        np.testing.assert_allclose(actual.view((float, len(actual.dtype))), expected.view((float, len(expected.dtype))), atol=1e-5)


def test_segment_everything_on_onnx(robust_dir: Path, tmp_path: Path) -> None:
    image = EXAMPLES / "images" / "fog.png"
    runner = CliRunner()
    for backend in ("torch", "onnx"):
        extra = ["--onnx-dir", str(robust_dir)] if backend == "onnx" else []
        result = runner.invoke(cli, ["segment", str(image), "-o", str(tmp_path / backend), "--points-per-side", "8",
                                     "--pred-iou-thresh", "0.5", "--stability-score-thresh", "0.5",
                                     "--backend", backend, *extra])
        assert result.exit_code == 0, result.output
    torch_masks = sorted((tmp_path / "torch" / "fog").glob("*.png"))
    onnx_masks = sorted((tmp_path / "onnx" / "fog").glob("*.png"))
    assert torch_masks and [p.name for p in torch_masks] == [p.name for p in onnx_masks]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(torch_masks, onnx_masks))


def test_onnx_backend_errors(robust_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    images = str(EXAMPLES / "images")
    missing = runner.invoke(cli, ["segment", images, "-o", str(tmp_path / "a"), "--backend", "onnx", "--onnx-dir", str(tmp_path)])
    assert missing.exit_code == 2 and "robustsam_onnx.json" in missing.output
    mode = runner.invoke(cli, ["segment", images, "-o", str(tmp_path / "b"), "--backend", "onnx",
                               "--onnx-dir", str(robust_dir), "--mode", "sam"])
    assert mode.exit_code == 2 and "robust path" in mode.output
    opset = runner.invoke(cli, ["export", "--onnx", str(tmp_path / "c"), "--opset", "16"])
    assert opset.exit_code == 2 and not (tmp_path / "c").exists()


@pytest.mark.parity
@pytest.mark.slow
def test_vit_b_onnx_parity(tmp_path: Path, one_thread) -> None:
    """vit_b with synthetic weights: both paths, box, points and mask input, fp32 and int8."""
    model = model_from_state("vit_b", dict(synthetic_state_dict(load_manifest("vit_b"))))
    rng = np.random.default_rng(0)
    image = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
    image[60:180, 80:240] = [200, 180, 40]
    for robust in (True, False):
        folder = export_onnx(model, tmp_path / str(robust), robust=robust, quantize=robust).parent
        check_predictor(OnnxPredictor(folder), RobustPredictor(model, robust=robust), image)
        if robust:
            fp32, int8 = OnnxPredictor(folder), OnnxPredictor(folder, quantized=True)
            box = prompt_cases(image.shape[:2])["box"]
            fp32.set_image(image)
            int8.set_image(image)
            a, b = fp32.predict(**box, multimask_output=False)[0], int8.predict(**box, multimask_output=False)[0]
            iou = (a & b).sum() / max((a | b).sum(), 1)
            print(f"\nint8 decoder mask IoU against fp32 (vit_b, box): {iou:.3f}")
            assert iou > 0.5
