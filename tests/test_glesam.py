"""GleSAM on the built-in tiny SAM: the enhancer's shapes, which weights each stage trains, loading a
diffusers U-Net folder from disk, the released LoRA key mapping, and both training stages from the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from core import build_robustsam  # noqa: E402
from core.glesam import GleSam, GleSamPredictor, build_enhancer, load_glesam, released_lora_to_peft  # noqa: E402
from core.glesam.unet import small_unet_config, unet_from_config  # noqa: E402
from core.model.default_model import DEFAULT_CHECKPOINT  # noqa: E402
from robustsam_cli.main import cli  # noqa: E402
from train.glesam import glesam_trainable  # noqa: E402


@pytest.fixture(scope="module")
def sam():
    return build_robustsam(None, DEFAULT_CHECKPOINT)


def test_enhancer_keeps_the_embedding_shape(sam) -> None:
    torch.manual_seed(0)
    enhancer = build_enhancer(sam, lora_rank=4)
    embedding = torch.randn(2, sam.config.prompt_embed_dim, sam.config.embedding_size, sam.config.embedding_size)
    with torch.no_grad():
        enhanced = enhancer(embedding)
    assert enhanced.shape == embedding.shape and torch.isfinite(enhanced).all()
    assert not torch.allclose(enhanced, embedding)


def test_each_stage_trains_only_its_part_and_the_rest_stays_bit_identical(sam) -> None:
    torch.manual_seed(0)
    model = GleSam(sam, build_enhancer(sam, lora_rank=4))
    before = {name: value.clone() for name, value in model.state_dict().items()}
    trainable = dict(glesam_trainable(model, "decoder"))
    assert trainable and all(name.startswith("sam.mask_decoder.") for name in trainable)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    images = torch.randn(1, 3, sam.config.image_size, sam.config.image_size)
    embedding = model.embed(images)
    sparse, dense = sam.prompt_encoder(points=None, boxes=torch.tensor([[10.0, 10.0, 90.0, 90.0]]), masks=None)
    low_res = sam.mask_decoder.predict_masks(embedding, sam.prompt_encoder.get_dense_pe(), sparse, dense)[0]
    low_res.square().mean().backward()
    optimizer.step()
    after = model.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and changed <= set(trainable)


def test_a_diffusers_unet_folder_loads_from_disk(sam, tmp_path: Path) -> None:
    torch.manual_seed(0)
    unet = unet_from_config(small_unet_config(sample_size=sam.config.embedding_size, width=32))
    unet.save_pretrained(tmp_path / "unet")
    enhancer = build_enhancer(sam, unet=tmp_path / "unet", lora_rank=4)
    lora = [name for name, _ in enhancer.named_parameters() if ".lora_" in name]
    base = [name for name, p in enhancer.named_parameters() if ".lora_" not in name and p.requires_grad]
    assert lora and not base, "with a pretrained U-Net only LoRA weights may train"
    conv_in = dict(unet.named_parameters())["conv_in.weight"]
    wide = dict(enhancer.unet.named_parameters())
    wide_conv_in = next(value for name, value in wide.items() if name.endswith("conv_in.base_layer.weight") or name == "conv_in.weight")
    assert wide_conv_in.shape[1] == sam.config.prompt_embed_dim
    assert torch.equal(wide_conv_in[:, : conv_in.shape[1]], conv_in), "channel replication tiles the SD kernel"


def test_released_lora_keys_map_to_peft_names() -> None:
    state = {"unet.down_blocks.0.attentions.0.proj_in.lora.down.weight": torch.zeros(4, 8),
             "unet.down_blocks.0.attentions.0.proj_in.lora.up.weight": torch.zeros(8, 4)}
    mapped = released_lora_to_peft(state)
    assert set(mapped) == {"down_blocks.0.attentions.0.proj_in.lora_A.default.weight",
                           "down_blocks.0.attentions.0.proj_in.lora_B.default.weight"}


def test_train_both_stages_from_the_cli_then_predict(tmp_path: Path) -> None:
    runner = CliRunner()
    common = ["train", "--method", "glesam", "--data", "synthetic:4", "--image-size", "128", "--max-steps", "2",
              "--lora-rank", "4", "--batch-size", "2"]
    first = runner.invoke(cli, common + ["--stage", "unet", "-o", str(tmp_path / "unet")])
    assert first.exit_code == 0, first.output
    second = runner.invoke(cli, common + ["--stage", "decoder", "--checkpoint", str(tmp_path / "unet" / "final.pth"),
                                          "-o", str(tmp_path / "decoder")])
    assert second.exit_code == 0, second.output
    model = load_glesam(tmp_path / "decoder" / "final.pth")
    predictor = GleSamPredictor(model)
    image = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(box=np.array([10, 10, 80, 70]), multimask_output=False)
    assert masks.shape == (1, 96, 128) and scores.shape == (1,)
    assert predictor.enhancer_seconds > 0
