"""core.model.encoder: the fused-attention forward against segment_anything's ImageEncoderViT forward."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from segment_anything.modeling import ImageEncoderViT
from torch import nn

import core.model.encoder
from core import RobustSam, get_config
from core.model.checkpoint import expected_shapes
from core.model.encoder import encoder_forward
from core.model.synthetic_weights import synthetic_state_dict

# Float32 rounding of a different summation order; a wrong bias, scale, window or padding is O(1).
TOLERANCE = 1e-5


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.double() - expected.double()).norm() / expected.double().norm())


@pytest.fixture(scope="module", params=["vit_micro", "vit_tiny"])
def model(request) -> RobustSam:
    """A small RobustSam with synthetic weights (non-zero relative-position tables)."""
    model_type = request.param
    model = RobustSam(get_config(model_type), model_type)
    model.load_state_dict(synthetic_state_dict(expected_shapes(model_type)))
    return model.eval()


def images(size: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(size))


def reference_forward(encoder: ImageEncoderViT, x: torch.Tensor, early_block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """segment_anything's own forward, with the early block's output captured by a hook."""
    captured = {}
    hook = encoder.blocks[early_block].register_forward_hook(lambda module, args, out: captured.update(early=out))
    try:
        embedding = encoder(x)
    finally:
        hook.remove()
    return embedding, captured["early"].permute(0, 3, 1, 2)


@torch.inference_mode()
def test_fast_forward_matches_segment_anything(model: RobustSam) -> None:
    x = images(model.config.image_size)
    expected_embedding, expected_early = reference_forward(model.image_encoder, x, model.config.early_block)
    embedding, early = encoder_forward(model.image_encoder, x, model.config.early_block)
    assert embedding.shape == expected_embedding.shape and early.shape == expected_early.shape
    assert relative_error(embedding, expected_embedding) < TOLERANCE
    assert relative_error(early, expected_early) < TOLERANCE


@torch.inference_mode()
def test_encode_switches_between_fast_and_exact(model: RobustSam) -> None:
    x = images(model.config.image_size, batch=1)
    expected_embedding, expected_early = reference_forward(model.image_encoder, x, model.config.early_block)
    fast_embedding, _ = model.encode(x)
    assert not torch.equal(fast_embedding, expected_embedding)  # proves the fast forward ran
    assert relative_error(fast_embedding, expected_embedding) < TOLERANCE
    model.exact_encoder = True
    try:
        embedding, early = model.encode(x)
    finally:
        model.exact_encoder = False
    assert torch.equal(embedding, expected_embedding) and torch.equal(early, expected_early)


@torch.inference_mode()
def test_padded_windows_match_segment_anything() -> None:
    """A 6x6 token grid in 4x4 windows: SAM pads to 8x8, and the padded keys carry the qkv bias."""
    encoder = ImageEncoderViT(
        img_size=96,
        patch_size=16,
        embed_dim=48,
        depth=3,
        num_heads=2,
        mlp_ratio=4,
        out_chans=32,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=4,
        global_attn_indexes=(1,),
    ).eval()
    encoder.load_state_dict(synthetic_state_dict({k: v.shape for k, v in encoder.state_dict().items()}))
    x = images(96)
    expected_embedding, expected_early = reference_forward(encoder, x, 1)
    embedding, early = encoder_forward(encoder, x, 1)
    assert relative_error(embedding, expected_embedding) < TOLERANCE
    assert relative_error(early, expected_early) < TOLERANCE


@torch.inference_mode()
def test_slabs_give_the_whole_result(model: RobustSam, monkeypatch) -> None:
    """Attention masks built a few query rows at a time, and the MLP a few tokens at a time
    (sizes that leave a partial last slab), equal the one-piece computation."""
    x = images(model.config.image_size, batch=1)
    whole, _ = encoder_forward(model.image_encoder, x, model.config.early_block)
    grid = model.config.embedding_size
    heads = model.config.encoder_num_heads
    monkeypatch.setattr(core.model.encoder, "MASK_SLAB_BYTES", 3 * heads * grid * grid * grid * 4)
    monkeypatch.setattr(core.model.encoder, "MLP_SLAB_TOKENS", 5)
    sliced, _ = encoder_forward(model.image_encoder, x, model.config.early_block)
    assert relative_error(sliced, whole) < 1e-6


@torch.inference_mode()
def test_bfloat16_autocast_stays_close(model: RobustSam) -> None:
    """The attention mask follows the query's dtype (bfloat16 from the autocast qkv projection),
    so the forward runs under autocast."""
    x = images(model.config.image_size, batch=1)
    expected, _ = encoder_forward(model.image_encoder, x, model.config.early_block)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embedding, _ = encoder_forward(model.image_encoder, x, model.config.early_block)
    error = relative_error(embedding.float(), expected)
    # bfloat16 keeps 8 significant bits (relative rounding 4e-3 per operation).
    assert 1e-4 < error < 5e-2


def test_early_block_out_of_range(model: RobustSam) -> None:
    with pytest.raises(ValueError, match="not a block index"):
        encoder_forward(model.image_encoder, images(model.config.image_size, batch=1), len(model.image_encoder.blocks))


def test_gradients_match_segment_anything() -> None:
    """Training through the encoder: same gradients for the input and the relative-position tables."""
    model_type = "vit_micro"
    model = RobustSam(get_config(model_type), model_type)
    model.load_state_dict(synthetic_state_dict(expected_shapes(model_type)))
    encoder = model.image_encoder
    x = images(model.config.image_size, batch=1).requires_grad_()
    tables = [encoder.blocks[0].attn.rel_pos_h, encoder.blocks[1].attn.rel_pos_w]

    def gradients(forward) -> list[torch.Tensor]:
        embedding = forward()
        return torch.autograd.grad(embedding.square().sum(), [x, *tables])

    expected = gradients(lambda: encoder(x))
    actual = gradients(lambda: encoder_forward(encoder, x, model.config.early_block)[0])
    for a, e in zip(actual, expected):
        assert relative_error(a, e) < TOLERANCE
