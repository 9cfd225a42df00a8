"""The robust blocks' fast forms: Winograd 3x3 convolutions, the half-spectrum Fourier filter and
the cell-wise branch mixing, each against the direct formula of the spec."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import core.model.winograd
from core import RobustSam, get_config
from core.model.checkpoint import expected_shapes
from core.model.modules import FourierAmplitudeFilter, _mix_by_cells
from core.model.synthetic_weights import synthetic_state_dict
from core.model.winograd import WinogradConv2d, conv3x3


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.double() - expected.double()).norm() / expected.double().norm())


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "batch, channels, out_channels, height, width, bias",
    [(1, 8, 8, 16, 16, True), (2, 5, 7, 13, 10, False), (1, 3, 4, 1, 6, True), (3, 16, 4, 9, 4, True)],
)
def test_winograd_equals_direct_convolution(batch, channels, out_channels, height, width, bias) -> None:
    """Sizes that are not multiples of the 4x4 tile, batches, with and without bias."""
    x = randn(batch, channels, height, width)
    weight = randn(out_channels, channels, 3, 3, seed=1)
    b = randn(out_channels, seed=2) if bias else None
    expected = F.conv2d(x.double(), weight.double(), None if b is None else b.double(), padding=1)
    actual = conv3x3(x, weight, b)
    assert actual.shape == expected.shape and actual.is_contiguous()
    assert relative_error(actual, expected) < 1e-5


def test_winograd_accepts_channels_last_input() -> None:
    x = randn(2, 6, 12, 12).contiguous(memory_format=torch.channels_last)
    weight = randn(5, 6, 3, 3, seed=1)
    assert relative_error(conv3x3(x, weight), F.conv2d(x, weight, padding=1)) < 1e-5


def test_winograd_conv_dispatch_and_cache(monkeypatch) -> None:
    monkeypatch.setattr(core.model.winograd, "WINOGRAD_MIN_CHANNELS", 4)
    conv = WinogradConv2d(6, 6, 3, padding=1)
    x = randn(1, 6, 10, 10)
    with torch.no_grad():
        direct = F.conv2d(x, conv.weight, conv.bias, padding=1)
        fast = conv(x)
        assert conv._cache is not None  # inference took the Winograd path
        assert not torch.equal(fast, direct) and relative_error(fast, direct) < 1e-5
        conv.weight.mul_(2.0)  # an in-place update (an optimiser step, load_state_dict) invalidates the cache
        assert relative_error(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1)) < 1e-5
    # With gradients, nn.Conv2d itself runs: identical result and working backward.
    trained = conv(x)
    assert torch.equal(trained, F.conv2d(x, conv.weight, conv.bias, padding=1))
    trained.sum().backward()
    assert conv.weight.grad is not None


def test_winograd_skips_narrow_and_other_shapes() -> None:
    narrow = WinogradConv2d(8, 8, 3, padding=1)
    strided = WinogradConv2d(256, 256, 3, padding=1, stride=2)
    with torch.no_grad():
        narrow(randn(1, 8, 8, 8))
        strided(randn(1, 256, 8, 8))
    assert narrow._cache is None and strided._cache is None


def fourier_filter_by_spec(module: FourierAmplitudeFilter, x: torch.Tensor) -> torch.Tensor:
    """Spec 3.1 step 4: real(ifft2(A' cos P + i A' sin P)), A' = conv(|fft2(x)|), P = angle(fft2(x))."""
    spectrum = torch.fft.fft2(x)
    filtered = torch.polar(module.conv_layer(spectrum.abs()), spectrum.angle())
    return torch.fft.ifft2(filtered).real


def phase_is_defined(x: torch.Tensor) -> bool:
    """Whether every bin of both transforms of x is exactly 0 or far above float32 rounding.

    The spec's angle(Z) is arbitrary where Z is rounding noise: a bin that is 0 in exact arithmetic
    can come out as 0 from fft2 and as 4e-7 at a random angle from rfft2 (a constant 6x5 channel
    on torch 2.14), and the spec's value there depends on the FFT library, not on x.
    """
    full, half = torch.fft.fft2(x).abs(), torch.fft.rfft2(x).abs()
    scale = full.amax(dim=(-2, -1), keepdim=True)
    noise = lambda amplitude: (amplitude > 0) & (amplitude < 1e-4 * scale)  # noqa: E731
    same_zeros = torch.equal(full[..., : half.shape[-1]] == 0, half == 0)
    return same_zeros and not noise(full).any() and not noise(half).any()


@pytest.mark.parametrize(
    "height, width, zero_bins",
    [(8, 8, None), (7, 9, None), (6, 5, None), (8, 8, "zero"), (7, 9, "zero"), (6, 5, "zero"), (8, 8, "constant")],
)
def test_half_spectrum_fourier_filter_equals_spec(height: int, width: int, zero_bins) -> None:
    """Without zero bins inference takes the unguarded gain; with them, the guarded path.

    A zero channel's spectrum is exactly 0 at any size (every butterfly adds zeros). A constant
    channel (one non-zero frequency) is exact only where the FFT's twiddles cancel exactly, as at
    8x8; at 6x5 and 7x9 its zero bins are rounding noise with an arbitrary phase.
    """
    torch.manual_seed(0)
    module = FourierAmplitudeFilter(6)
    x = randn(2, 6, height, width)
    if zero_bins is not None:
        x[1, 2] = 0.0  # a zero channel: angle(0) = 0 keeps the amplitude real there
    if zero_bins == "constant":
        x[0, 3] = 1.5
    assert phase_is_defined(x)
    with torch.no_grad():
        assert relative_error(module(x), fourier_filter_by_spec(module, x)) < 1e-6


def test_fourier_filter_gradient_is_finite_at_zero_spectrum() -> None:
    module = FourierAmplitudeFilter(4)
    x = randn(1, 4, 8, 8)
    x[0, 1] = 0.0
    x.requires_grad_()
    module(x).square().sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(module.conv_layer.weight.grad).all()


@pytest.mark.parametrize("size", [(8, 8), (12, 20), (6, 10)])
def test_mix_by_cells_equals_upsampled_weights(size: tuple[int, int]) -> None:
    o1, o2 = randn(2, 3, *size), randn(2, 3, *size, seed=1)
    a1 = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    a2 = 1 - a1
    up = lambda a: F.interpolate(a, size=size, mode="nearest")  # noqa: E731
    assert torch.allclose(_mix_by_cells(o1, o2, a1, a2), o1 * up(a1) + o2 * up(a2), rtol=0, atol=1e-6)


@torch.inference_mode()
def test_image_feature_same_with_and_without_winograd(monkeypatch) -> None:
    """The robust image feature of a small model, Winograd forced on every 3x3 convolution vs off."""
    model_type = "vit_micro"
    model = RobustSam(get_config(model_type), model_type)
    model.load_state_dict(synthetic_state_dict(expected_shapes(model_type)))
    model.eval()
    size = model.config.embedding_size
    embedding = randn(1, model.config.prompt_embed_dim, size, size)
    early = randn(1, model.config.encoder_embed_dim, size, size, seed=1)
    monkeypatch.setattr(core.model.winograd, "WINOGRAD_MIN_CHANNELS", 10**9)
    direct = model.mask_decoder.image_feature(embedding, early)
    monkeypatch.setattr(core.model.winograd, "WINOGRAD_MIN_CHANNELS", 1)
    fast = model.mask_decoder.image_feature(embedding, early)
    assert not torch.equal(fast, direct) and relative_error(fast, direct) < 1e-5


def test_prompt_by_prompt_robust_masks_equal_batched(micro_model) -> None:
    """In eval mode on a CPU the robust masks are read prompt by prompt without keeping the features;
    `return_features` computes the (N, C, H, W) features at once. Same masks, with gradients on too."""
    micro_model.eval()
    decoder, config = micro_model.mask_decoder, micro_model.config
    size = config.embedding_size
    embedding = randn(2, config.prompt_embed_dim, size, size)
    early = randn(2, config.encoder_embed_dim, size, size, seed=1)
    sparse, dense = randn(6, 3, config.prompt_embed_dim, seed=2), randn(6, config.prompt_embed_dim, size, size, seed=3)
    pe = micro_model.prompt_encoder.get_dense_pe()
    with torch.inference_mode():
        feature = decoder.image_feature(embedding, early)
        lean = decoder.decode(embedding, pe, sparse, dense, feature, return_features=False)
        full = decoder.decode(embedding, pe, sparse, dense, feature)
    with torch.enable_grad():
        trained = decoder.decode(embedding, pe, sparse, dense, feature.clone(), return_features=False)
    assert lean.features is None and full.features.shape == (6, config.prompt_embed_dim // 8, 4 * size, 4 * size)
    for other in (full, trained):
        assert relative_error(lean.masks, other.masks.detach()) < 1e-5
