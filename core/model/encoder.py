"""A faster forward pass of `segment_anything`'s ImageEncoderViT, over the same parameters.

Differences from `ImageEncoderViT.forward`, none of which changes the function computed:
  * attention runs through `scaled_dot_product_attention` (a fused kernel that never holds the
    full attention matrix) with SAM's decomposed relative-position term passed as the additive
    attention mask; in global blocks the mask is built and used a slab of query rows at a time,
    so the memory it takes stays bounded whatever the image size;
  * windowed blocks apply `qkv` before padding and `proj` after cropping, so neither runs on
    the padding. SAM pads the normalised input with zeros, so its padded keys and values equal
    the `qkv` bias: the padding is filled with that bias here.
Results differ from SAM's only by floating-point rounding (relative error ~1e-6 in float32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, Block, ImageEncoderViT, get_rel_pos

# Upper bound on the attention-mask slab of a global block: 12 heads x 4096 x 4096 float32 would
# be 805 MB for vit_b at 1024 px; 64 MB slabs cost no measurable time.
MASK_SLAB_BYTES = 64 * 2**20
# Tokens per slab of the MLP: 1024 tokens of vit_b's 3072-wide hidden layer take 12 MB.
MLP_SLAB_TOKENS = 1024


def encoder_forward(
    encoder: ImageEncoderViT, images: torch.Tensor, early_block: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Preprocessed images (B, 3, S, S) -> embedding (B, D, S/16, S/16) and the output of
    block `early_block` (B, C_vit, S/16, S/16), as SAM's encoder would compute them."""
    if not 0 <= early_block < len(encoder.blocks):
        raise ValueError(f"early_block {early_block} is not a block index (depth {len(encoder.blocks)})")
    x = encoder.patch_embed(images)
    if encoder.pos_embed is not None:
        x = x + encoder.pos_embed
    early = None
    for index, block in enumerate(encoder.blocks):
        x = block_forward(block, x)
        if index == early_block:
            early = x.permute(0, 3, 1, 2)
    return neck_per_image(encoder, x), early


def neck_per_image(encoder: ImageEncoderViT, x: torch.Tensor, channels_first: bool = True) -> torch.Tensor:
    """SAM's neck on ViT tokens (B, H, W, C) -> (B, D, H, W), one image at a time: its convolutions'
    CPU kernels round differently (~1e-6) for other batch sizes, while every other layer computes an
    image alike in any batch, so an image's embedding does not depend on the batch it was encoded in.

    `channels_first` copies each image to (1, C, H, W) first, which the fused forward needs for that;
    False passes SAM's own channels-last view, as `segment_anything`'s forward does.
    """
    images = (image[None].permute(0, 3, 1, 2) for image in x)
    return torch.cat([encoder.neck(image.contiguous() if channels_first else image) for image in images])


def block_forward(block: Block, x: torch.Tensor) -> torch.Tensor:
    """One ViT block, windowed or global: (B, H, W, C) -> (B, H, W, C)."""
    attn = block.attn
    b, h, w, c = x.shape
    qkv = attn.qkv(block.norm1(x))
    size = block.window_size
    if size > 0:
        windows, (hp, wp) = _partition(qkv, size, attn.qkv.bias)
        out = _attention(attn, windows, (size, size), pack_heads=False)
        out = _unpartition(out, size, b, (hp, wp))[:, :h, :w]
    else:
        out = _attention(attn, qkv.view(b, h * w, -1), (h, w), pack_heads=True).view(b, h, w, c)
    x = x + attn.proj(out)
    return _mlp_residual(block, x)


def _mlp_residual(block: Block, x: torch.Tensor) -> torch.Tensor:
    """x + mlp(norm2(x)), a slab of tokens at a time so that the 4x wider hidden activation
    stays small (large short-lived buffers cost page faults on every block)."""
    tokens = x.reshape(-1, x.shape[-1])
    out = torch.empty_like(tokens)
    for start in range(0, tokens.shape[0], MLP_SLAB_TOKENS):
        part = tokens[start : start + MLP_SLAB_TOKENS]
        out[start : start + MLP_SLAB_TOKENS] = part + block.mlp(block.norm2(part))
    return out.view(x.shape)


def _partition(qkv: torch.Tensor, size: int, bias: torch.Tensor | None) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, 3C) -> windows (B * nW, size * size, 3C) and the padded (Hp, Wp).

    Padding holds the `qkv` bias: what SAM's `qkv` gives for its zero-padded input.
    """
    b, h, w, c3 = qkv.shape
    hp, wp = -(-h // size) * size, -(-w // size) * size
    if (hp, wp) != (h, w):
        padded = qkv.new_empty(b, hp, wp, c3)
        padded[:, :h, :w] = qkv
        fill = bias if bias is not None else qkv.new_zeros(c3)
        padded[:, h:] = fill
        padded[:, :h, w:] = fill
        qkv = padded
    windows = qkv.view(b, hp // size, size, wp // size, size, c3).transpose(2, 3)
    return windows.reshape(-1, size * size, c3), (hp, wp)


def _unpartition(windows: torch.Tensor, size: int, batch: int, padded_hw: tuple[int, int]) -> torch.Tensor:
    """Windows (B * nW, size * size, C) -> (B, Hp, Wp, C)."""
    hp, wp = padded_hw
    x = windows.view(batch, hp // size, wp // size, size, size, -1).transpose(2, 3)
    return x.reshape(batch, hp, wp, -1)


def _attention(attn: Attention, qkv: torch.Tensor, size: tuple[int, int], pack_heads: bool) -> torch.Tensor:
    """Multi-head attention with SAM's relative-position term over a (h, w) token grid.

    qkv: (B, h * w, 3C) -> (B, h * w, C). `pack_heads` copies q, k, v head-major first: the fused
    kernel runs ~15% faster on packed heads, which pays for the copy on long (global) sequences
    but not on 14x14 windows.
    """
    b, n, _ = qkv.shape
    heads = attn.num_heads
    qkv = qkv.view(b, n, 3, heads, -1).permute(2, 0, 3, 1, 4)
    if pack_heads:
        qkv = qkv.contiguous()
    q, k, v = qkv.unbind(0)
    if not attn.use_rel_pos:
        out = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
    else:
        out = _rel_pos_attention(q, k, v, attn, size)
    return out.transpose(1, 2).reshape(b, n, -1)


def _rel_pos_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn: Attention, size: tuple[int, int]
) -> torch.Tensor:
    """softmax(scale q k^T + rel_h + rel_w) v, q/k/v: (B, heads, h * w, d) -> (B, heads, h * w, d).

    rel_h[q, k] = q . Rh[row(q), row(k)] and rel_w[q, k] = q . Rw[col(q), col(k)] (SAM's
    `add_decomposed_rel_pos`, on the unscaled query); their sum is the attention mask, built for
    a slab of query rows at a time.
    """
    b, heads, n, d = q.shape
    h, w = size
    rel_h_table = get_rel_pos(h, h, attn.rel_pos_h).to(q.dtype)  # (h, h, d)
    rel_w_table = get_rel_pos(w, w, attn.rel_pos_w).to(q.dtype)  # (w, w, d)
    grid_q = q.reshape(b * heads, h, w, d)
    rel_h = torch.einsum("bhwc,hkc->bhwk", grid_q, rel_h_table)  # (B * heads, h, w, h)
    rel_w = torch.einsum("bhwc,wkc->bhwk", grid_q, rel_w_table)  # (B * heads, h, w, w)
    rows = min(h, max(1, MASK_SLAB_BYTES // (b * heads * w * n * q.element_size())))
    # One buffer for all slabs (fresh buffers cost page faults); autograd and torch.compile need
    # out-of-place tensors.
    tracked = torch.is_grad_enabled() and (rel_h.requires_grad or rel_w.requires_grad)
    reuse = not tracked and not torch.compiler.is_compiling()
    buffer = rel_h.new_empty(b * heads * rows * w * n) if reuse else None
    out = torch.empty_like(q)
    for top in range(0, h, rows):
        bottom = min(top + rows, h)
        mask = _mask(rel_h[:, top:bottom], rel_w[:, top:bottom], buffer).view(b, heads, -1, n)
        span = slice(top * w, bottom * w)
        out[:, :, span] = F.scaled_dot_product_attention(q[:, :, span], k, v, attn_mask=mask, scale=attn.scale)
    return out


def _mask(rel_h: torch.Tensor, rel_w: torch.Tensor, buffer: torch.Tensor | None) -> torch.Tensor:
    """rel_h (M, r, w, h) and rel_w (M, r, w, w) -> their broadcast sum (M, r, w, h, w), contiguous,
    written to the front of the flat `buffer` when one is given."""
    if buffer is None:
        return (rel_h[..., None] + rel_w[..., None, :]).contiguous()
    m, r, w, h = rel_h.shape
    return torch.add(rel_h[..., None], rel_w[..., None, :], out=buffer[: m * r * w * h * w].view(m, r, w, h, w))
