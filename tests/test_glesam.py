"""GleSAM on the built-in tiny SAM: the enhancer's shapes, which weights each stage trains, loading a
diffusers U-Net (and an SD pipeline folder's CLIP context) from disk, the released-weights mapping,
LQSeg's levels, both training stages from the CLI, and `segment`, `eval` and `prior` on a GleSAM
checkpoint beside RobustSAM and SAM, with one-line errors for bad GleSAM checkpoints."""

from __future__ import annotations

import csv
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from core import build_robustsam  # noqa: E402
from core.io import read_image, write_image  # noqa: E402
from core.data.scenes import make_scene  # noqa: E402
from core.degradations.lqseg import lqseg  # noqa: E402
from core.errors import CheckpointError  # noqa: E402
from core.evaluation.metrics import batch_iou  # noqa: E402
from core.evaluation.prompt_sampling import mask_box  # noqa: E402
from core.glesam import (  # noqa: E402
    GleSam,
    build_enhancer,
    checkpoint_dict,
    from_released,
    load_glesam,
    released_lora_to_peft,
)
from core.glesam.unet import small_unet_config, unet_from_config  # noqa: E402
from core.inference import GleSamPredictor, RobustPredictor, open_predictor, segment  # noqa: E402
from core.model import is_robust_key  # noqa: E402
from core.model.default_model import DEFAULT_CHECKPOINT  # noqa: E402
from robustsam_cli.main import cli  # noqa: E402
from train.glesam import glesam_trainable  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = 128


@pytest.fixture(scope="module")
def sam():
    return build_robustsam(None, DEFAULT_CHECKPOINT)


@pytest.fixture(scope="module")
def glesam_checkpoint(tmp_path_factory, one_thread) -> Path:
    """Both stages from the CLI, one step each; the decoder stage at a large rate so that GleSAM's masks
    visibly differ from SAM's (the tests below must tell which model ran)."""
    root = tmp_path_factory.mktemp("glesam")
    runner = CliRunner()
    common = ["train", "--method", "glesam", "--data", "synthetic:4", "--image-size", str(SIZE), "--max-steps", "1",
              "--lora-rank", "4", "--batch-size", "2"]
    first = runner.invoke(cli, common + ["--stage", "unet", "-o", str(root / "unet")])
    assert first.exit_code == 0, first.output
    second = runner.invoke(cli, common + ["--stage", "decoder", "--lr", "0.05", "--checkpoint", str(root / "unet" / "final.pth"),
                                          "-o", str(root / "decoder")])
    assert second.exit_code == 0, second.output
    return root / "decoder" / "final.pth"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """Two 128 px scenes: images/*.png and masks/*.npy."""
    root = tmp_path_factory.mktemp("scenes")
    (root / "masks").mkdir()
    for seed in (1_000_000, 1_000_001):
        scene = make_scene(seed, size=SIZE, style="organic")
        write_image(root / "images" / f"{scene.name}.png", scene.image)
        np.save(root / "masks" / f"{scene.name}.npy", scene.masks)
    return root


@pytest.fixture(scope="module")
def layout(scenes: Path, tmp_path_factory) -> Path:
    """The scenes in the Robust-Seg layout: clear, masks and LQ-1, LQ-2, LQ-3 (`robustsam degrade --types lqseg`)."""
    root = tmp_path_factory.mktemp("layout") / "lq"
    made = CliRunner().invoke(cli, ["degrade", str(scenes / "images"), "-o", str(root), "--masks", str(scenes / "masks"),
                                    "--types", "lqseg"])
    assert made.exit_code == 0, made.output
    return root


def test_enhancer_keeps_the_embedding_shape_and_starts_near_the_identity(sam) -> None:
    torch.manual_seed(0)
    enhancer = build_enhancer(sam, lora_rank=4)
    embedding = torch.randn(2, sam.config.prompt_embed_dim, sam.config.embedding_size, sam.config.embedding_size)
    with torch.no_grad():
        enhanced = enhancer(embedding)
    assert enhanced.shape == embedding.shape and torch.isfinite(enhanced).all()
    # a U-Net from scratch predicts no noise yet: x0 = x_t / sqrt(alpha_1)
    assert torch.allclose(enhanced, embedding / enhancer.sqrt_alpha, atol=1e-6)


def test_each_stage_trains_only_its_part_and_the_rest_stays_bit_identical(sam) -> None:
    torch.manual_seed(0)
    model = GleSam(sam, build_enhancer(sam, lora_rank=4))
    before = {name: value.clone() for name, value in model.state_dict().items()}
    trainable = dict(glesam_trainable(model, "decoder"))
    assert trainable and all(name.startswith("sam.mask_decoder.") and "iou" not in name for name in trainable)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    images = torch.randn(1, 3, sam.config.image_size, sam.config.image_size)
    embedding = model.embed(images)
    sparse, dense = sam.prompt_encoder(points=None, boxes=torch.tensor([[10.0, 10.0, 90.0, 90.0]]), masks=None)
    low_res, iou = sam.mask_decoder.predict_masks(embedding, sam.prompt_encoder.get_dense_pe(), sparse, dense)[:2]
    (low_res.square().mean() + iou.square().mean()).backward()
    optimizer.step()
    after = model.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and changed <= set(trainable)


def test_lqseg_levels_are_seeded_and_grow_in_severity() -> None:
    clear = torch.from_numpy(np.stack([make_scene(seed, size=SIZE).image for seed in range(4)])).permute(0, 3, 1, 2) / 255.0
    errors = []
    for level in (1, 2, 3):
        degraded = lqseg(clear, level, torch.Generator().manual_seed(7))
        assert degraded.shape == clear.shape and degraded.min() >= 0 and degraded.max() <= 1
        assert torch.equal(degraded, lqseg(clear, level, torch.Generator().manual_seed(7)))
        errors.append(float((degraded - clear).square().mean()))
    assert errors[0] < errors[1] < errors[2], errors
    with pytest.raises(ValueError):
        lqseg(clear, 4)


def _tiny_sd_pipeline(root: Path, cross_attention_dim: int = 32) -> Path:
    """An SD-shaped pipeline folder: a small 4-channel U-Net, a one-layer CLIP text encoder, a tokenizer."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet_from_config(small_unet_config(sample_size=8, width=32, cross_attention_dim=cross_attention_dim)).save_pretrained(root / "unet")
    (root / "tokenizer").mkdir(parents=True)
    (root / "tokenizer" / "vocab.json").write_text(json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2}))
    (root / "tokenizer" / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(root / "tokenizer" / "vocab.json"), str(root / "tokenizer" / "merges.txt"), model_max_length=77)
    tokenizer.save_pretrained(root / "tokenizer")
    config = CLIPTextConfig(vocab_size=3, hidden_size=cross_attention_dim, intermediate_size=32, num_hidden_layers=1,
                            num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    CLIPTextModel(config).save_pretrained(root / "text_encoder")
    return root


def test_released_weights_map_onto_glesam_and_run_as_a_checkpoint(sam, tmp_path: Path) -> None:
    """GleSAM's released files, made the way its code writes them: LoRA by peft + diffusers'
    `convert_state_dict_to_diffusers` under `unet.` (`pytorch_lora_weights.safetensors`), the decoder
    as a whole DDP-wrapped SAM state dict (`epoch_last.pth`)."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    pipeline = _tiny_sd_pipeline(tmp_path / "sd")
    trained = build_enhancer(sam, unet=pipeline / "unet", lora_rank=4)
    generator = torch.Generator().manual_seed(1)
    for name, parameter in trained.unet.named_parameters():
        if ".lora_" in name:
            parameter.data = torch.randn(parameter.shape, generator=generator) * 0.1
    released = {f"unet.{key}": value.contiguous() for key, value in
                convert_state_dict_to_diffusers(get_peft_model_state_dict(trained.unet)).items()}
    assert {key.rsplit(".", 2)[-2] for key in released} == {"down", "up", "lora_A", "lora_B"}  # both naming schemes
    save_file(released, tmp_path / "pytorch_lora_weights.safetensors")
    decoder = {f"module.{key}": value + 0.5 if key.startswith("mask_decoder.") else value
               for key, value in sam.state_dict().items()}
    torch.save(decoder, tmp_path / "epoch_last.pth")

    model = from_released(DEFAULT_CHECKPOINT, pipeline, tmp_path / "pytorch_lora_weights.safetensors", tmp_path / "epoch_last.pth")
    loaded = dict(model.enhancer.unet.named_parameters())
    lora = {name: value for name, value in trained.unet.named_parameters() if ".lora_" in name}
    assert lora and all(torch.equal(loaded[name], value) for name, value in lora.items())
    decoder_keys = [key for key in model.sam.state_dict() if key.startswith("mask_decoder.") and not is_robust_key(key)]
    assert decoder_keys and all(torch.equal(model.sam.state_dict()[key], decoder[f"module.{key}"]) for key in decoder_keys)
    assert model.enhancer.context.shape == (1, 77, 32)  # the CLIP embedding of "", from the pipeline folder
    assert model.enhancer.context.abs().sum() > 0

    torch.save(checkpoint_dict(model, unet_source=str(pipeline)), tmp_path / "released.pth")
    reopened = open_predictor(tmp_path / "released.pth")
    assert isinstance(reopened, GleSamPredictor)
    assert torch.equal(reopened.glesam.enhancer.context, model.enhancer.context)

    wrong = {key: value[:2] if key.endswith("lora_A.weight") else value for key, value in released.items()}
    save_file(wrong, tmp_path / "wrong_rank.safetensors")
    with pytest.raises(CheckpointError, match="wrong_rank.safetensors: LoRA weights do not fit"):
        from_released(DEFAULT_CHECKPOINT, pipeline, tmp_path / "wrong_rank.safetensors", tmp_path / "epoch_last.pth")


def test_released_lora_keys_map_to_peft_names() -> None:
    state = {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora.down.weight": torch.zeros(4, 8),
             "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora.up.weight": torch.zeros(8, 4),
             "unet.conv_in.lora_A.weight": torch.zeros(4, 256, 3, 3)}
    mapped = released_lora_to_peft(state)
    assert set(mapped) == {"down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.default.weight",
                           "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.default.weight",
                           "conv_in.lora_A.default.weight"}
    with pytest.raises(CheckpointError, match="unexpected key"):
        released_lora_to_peft({"unet.conv_in.weight": torch.zeros(1)})


def test_segment_with_a_glesam_checkpoint_runs_glesam(glesam_checkpoint: Path, scenes: Path, tmp_path: Path) -> None:
    name = sorted((scenes / "images").iterdir())[0].name
    box = [20, 20, 100, 100]
    (tmp_path / "boxes.json").write_text(json.dumps({name: [{"box": box}]}))
    result = CliRunner().invoke(cli, ["segment", str(scenes / "images" / name), "--prompts", str(tmp_path / "boxes.json"),
                                      "-o", str(tmp_path / "out"), "--checkpoint", str(glesam_checkpoint)])
    assert result.exit_code == 0, result.output
    written = read_image(next((tmp_path / "out").glob("*/0.png")))
    written = written[..., 0] if written.ndim == 3 else written
    predictor = GleSamPredictor(load_glesam(glesam_checkpoint))
    predictor.set_image(read_image(scenes / "images" / name))
    expected = predictor.predict(box=np.array(box), multimask_output=False)[0][0]
    assert np.array_equal(written > 0, expected)
    summary = segment(predictor.glesam, [scenes / "images" / name], tmp_path / "library", prompts=tmp_path / "boxes.json")
    assert summary.masks == 1 and np.array_equal(read_image(next((tmp_path / "library").glob("*/0.png"))), read_image(
        next((tmp_path / "out").glob("*/0.png")))), "the library's segment() on a GleSam model differs from the CLI"
    sam_mask = RobustPredictor(predictor.glesam.sam, robust=False)
    sam_mask.set_image(read_image(scenes / "images" / name))
    assert not np.array_equal(expected, sam_mask.predict(box=np.array(box), multimask_output=False)[0][0])

    # A decoder stepped at rate 0.05 keeps few stable masks: no thresholds, so every image has some.
    grid = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]
    everything = CliRunner().invoke(cli, ["segment", str(scenes / "images"), "-o", str(tmp_path / "all"),
                                          "--checkpoint", str(glesam_checkpoint), *grid])
    assert everything.exit_code == 0, everything.output
    for image in (scenes / "images").iterdir():
        with open(tmp_path / "all" / image.stem / "metadata.csv") as handle:
            assert len(list(csv.DictReader(handle))) > 0
    # torchrun workers open the GleSAM checkpoint too, and write what one process writes.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    workers = CliRunner().invoke(cli, ["segment", str(scenes / "images"), "-o", str(tmp_path / "workers"), "--checkpoint",
                                       str(glesam_checkpoint), *grid, "--gpus", "2", "--master-port", port])
    assert workers.exit_code == 0, workers.output
    single = sorted(path.relative_to(tmp_path / "all") for path in (tmp_path / "all").rglob("*.png"))
    assert single and single == sorted(path.relative_to(tmp_path / "workers") for path in (tmp_path / "workers").rglob("*.png"))
    assert all((tmp_path / "all" / name).read_bytes() == (tmp_path / "workers" / name).read_bytes() for name in single)


def test_eval_compares_sam_robustsam_and_glesam_on_lq_levels(glesam_checkpoint: Path, layout: Path, tmp_path: Path) -> None:
    assert sorted(path.name for path in layout.iterdir()) == ["LQ-1", "LQ-2", "LQ-3", "clear", "masks"]
    result = CliRunner().invoke(cli, ["eval", "--data", str(layout), "--prompt", "box", "--out", str(tmp_path / "eval"),
                                 "--model", "sam=default:sam", "--model", "robustsam=default",
                                 "--model", f"glesam={glesam_checkpoint}"])
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert [model["path"] for model in document["models"]] == ["sam", "robust", "glesam"]
    rows = {row["label"]: row["values"] for row in document["tables"][0]["rows"]}
    assert {"LQ-1", "LQ-2", "LQ-3", "Degrade", "Clear", "Average"} <= set(rows)
    for label in ("LQ-1", "LQ-2", "LQ-3", "Clear"):
        values = {model: rows[label][model]["iou"] for model in ("sam", "robustsam", "glesam")}
        assert all(0 <= value <= 1 for value in values.values())
        assert values["glesam"] != values["sam"], f"{label}: GleSAM scored exactly as SAM's path"
    # the glesam column is GleSAM's own predictor (encoder, enhancer, its decoder), by hand on the clear images
    predictor, ious = GleSamPredictor(load_glesam(glesam_checkpoint)), []
    for image in sorted((layout / "clear").iterdir()):
        predictor.set_image(read_image(image))
        for mask in np.load(layout / "masks" / f"{image.stem}.npy"):
            predicted = predictor.predict(box=mask_box(mask), multimask_output=False)[0]
            ious.extend(batch_iou(predicted, mask[None]))
    assert rows["Clear"]["glesam"]["iou"] == pytest.approx(float(np.mean(ious)), abs=1e-6)


def test_prior_with_a_glesam_checkpoint_keeps_the_enhanced_embedding(glesam_checkpoint: Path, scenes: Path, tmp_path: Path) -> None:
    image = sorted((scenes / "images").iterdir())[0]
    result = CliRunner().invoke(cli, ["prior", str(image), "-o", str(tmp_path / "prior"), "--task", "dehaze", "--features",
                                      "--checkpoint", str(glesam_checkpoint), "--points-per-side", "4"])
    assert result.exit_code == 0, result.output
    stored = np.load(next((tmp_path / "prior").glob("*.features.npz")))["embedding"]
    predictor = GleSamPredictor(load_glesam(glesam_checkpoint))
    predictor.set_image(read_image(image))
    assert np.allclose(stored, predictor.features[0].numpy(), atol=1e-5)


def _corrupt(state: dict, kind: str) -> None:
    if kind == "model type":
        state["glesam"]["model_type"] = "vit_giant"
    elif kind == "unet weights":
        key = next(key for key in state["unet"] if key.endswith("conv_in.base_layer.weight"))
        state["unet"][key] = state["unet"][key][:, :3]
    elif kind == "no sam":
        del state["sam"]
    else:
        state["glesam"]["context"] = torch.zeros(1, 1, 5)


@pytest.mark.parametrize("kind", ["model type", "unet weights", "no sam", "context"])
def test_a_bad_glesam_checkpoint_is_one_line_and_exit_2(glesam_checkpoint: Path, scenes: Path, layout: Path, tmp_path: Path,
                                                        kind: str) -> None:
    state = torch.load(glesam_checkpoint, weights_only=True)
    _corrupt(state, kind)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    for arguments in (["segment", str(scenes / "images"), "-o", str(tmp_path / "out"), "--checkpoint", str(bad)],
                      ["eval", "--data", str(layout), "--out", str(tmp_path / "eval"), "--model", f"g={bad}"]):
        result = CliRunner().invoke(cli, arguments)
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"Error: {bad}: "), result.output
    assert not (tmp_path / "out").exists()
