"""Each degradation does what its published parameters say, reproducibly and batch-independently."""

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from kornia.color import hls_to_rgb, rgb_to_hls
from kornia.enhance import adjust_hue
from PIL import Image

from core.degradations import (
    DEGRADATIONS,
    PUBLISHED,
    degrade,
    generator_from_seed,
    mixed_degrade,
    register,
    sample_generators,
)
from core.degradations.kernels import fast_fft_length
from core.degradations.sampling import poisson
from core.degradations.codec import jpeg
from core.degradations.photometric import rotate_hue, with_lightness
from core.degradations import registry
from core.degradations.registry import DEGRADATIONS as REGISTRY

ALL = list(PUBLISHED) + ["identity"]
DETERMINISTIC = {"identity", "resampling_blur"}


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth_images(batch: int = 2, height: int = 64, width: int = 80, seed: int = 0) -> torch.Tensor:
    """Natural-ish images: random colours at a coarse scale plus some fine texture, in [0.1, 0.9]."""
    g = seeded(seed)
    coarse = F.interpolate(torch.rand(batch, 3, 8, 10, generator=g), size=(height, width), mode="bicubic")
    fine = torch.rand(batch, 3, height, width, generator=g) * 0.2
    return (coarse * 0.6 + fine + 0.1).clamp(0.1, 0.9)


def test_registry_holds_the_published_names_in_order_plus_identity():
    assert list(DEGRADATIONS)[:16] == ALL
    assert DEGRADATIONS is REGISTRY


@pytest.mark.parametrize("kind", ALL)
def test_shape_dtype_range_and_seeds(kind):
    x = smooth_images()
    y = degrade(x, kind, generator=seeded(1))
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert torch.equal(y, degrade(x, kind, generator=seeded(1)))
    different = not torch.allclose(y, degrade(x, kind, generator=seeded(2)))
    assert different == (kind not in DETERMINISTIC)
    if kind != "identity":
        assert float((y - x).abs().mean()) > 1e-3
    # half precision is computed in float32: the same result, rounded once at the end
    half = degrade(x.half(), kind, generator=seeded(1))
    expected = degrade(x.half().float(), kind, generator=seeded(1))
    assert half.dtype == torch.float16 and torch.allclose(half.float(), expected, atol=1e-3)


@pytest.mark.parametrize("kind", ALL)
def test_batched_equals_one_by_one_with_the_same_per_sample_generators(kind):
    x = smooth_images(batch=3)
    batched = degrade(x, kind, generator=seeded(7))
    generators = sample_generators(seeded(7), 3)
    singles = torch.cat([degrade(x[i : i + 1], kind, generator=[g]) for i, g in enumerate(generators)])
    assert torch.allclose(batched, singles, atol=1e-5)


@pytest.mark.parametrize("kinds", ALL + [["fog", "brightness", "fog", "contrast"]])
def test_out_buffer_and_in_place_give_the_same_result(kinds, monkeypatch):
    """Chunks of CPU_CHUNK_PIXELS write into `out`; chunks of two images cover the chunk
    boundaries. Types that build their result in `out` cannot while it is the images themselves
    (out=images degrades in place), so that compares their two code paths."""
    x = smooth_images(batch=4)
    whole = degrade(x, kinds, generator=seeded(2))  # one chunk
    monkeypatch.setattr(registry, "CPU_CHUNK_PIXELS", 2 * x.shape[-2] * x.shape[-1])
    expected = degrade(x, kinds, generator=seeded(2))
    # equal up to summation order: a chunk's motion kernels share the chunk's largest size
    assert torch.allclose(expected, whole, atol=1e-5)
    buffer = torch.full_like(x, -1.0)
    assert degrade(x, kinds, generator=seeded(2), out=buffer) is buffer
    assert torch.equal(buffer, expected)
    in_place = x.clone()
    degrade(in_place, kinds, generator=seeded(2), out=in_place)
    assert torch.equal(in_place, expected)
    channels_last = x.contiguous(memory_format=torch.channels_last)  # as a permuted (H, W, 3) array
    assert torch.equal(degrade(channels_last, kinds, generator=seeded(2)), expected)


def test_samples_draw_their_own_parameters():
    x = torch.full((2, 3, 16, 16), 0.5)
    y = degrade(x, "brightness", generator=seeded(3))
    assert not torch.isclose(y[0].mean(), y[1].mean())


def test_one_kind_per_sample_matches_separate_calls():
    x = smooth_images(batch=3)
    kinds = ["fog", "brightness", "fog"]
    mixed = degrade(x, kinds, generator=[generator_from_seed(s) for s in (1, 2, 3)])
    for i, (kind, seed) in enumerate(zip(kinds, (1, 2, 3))):
        alone = degrade(x[i : i + 1], kind, generator=[generator_from_seed(seed)])
        assert torch.allclose(mixed[i : i + 1], alone, atol=1e-6)


def test_default_generator_follows_torch_manual_seed():
    x = smooth_images(batch=1)
    torch.manual_seed(5)
    first = degrade(x, "gauss_noise")
    torch.manual_seed(5)
    assert torch.equal(first, degrade(x, "gauss_noise"))


def test_brightness_scales_the_mean_by_0_6_to_0_8():
    x = smooth_images(batch=8)
    y = degrade(x, "brightness", generator=seeded(0))
    ratio = y / x
    per_sample = ratio.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1], atol=1e-5)  # one factor per image
    assert float(per_sample.min()) >= 0.6 - 1e-6 and float(per_sample.max()) <= 0.8 + 1e-6


def test_contrast_scales_deviations_from_128_by_1_6_to_1_7():
    x = 0.35 + 0.3 * torch.rand(8, 3, 16, 16, generator=seeded(0))  # never clipped
    y = degrade(x, "contrast", generator=seeded(1))
    pivot = 128 / 255
    factor = ((y - pivot) / (x - pivot)).flatten(1)
    far = (x - pivot).abs().flatten(1) > 0.02
    values = factor[far].view(-1)
    assert float(values.min()) >= 1.6 - 1e-3 and float(values.max()) <= 1.7 + 1e-3


def test_gauss_noise_variance_250_to_260_on_the_255_scale():
    x = torch.full((2, 3, 256, 256), 0.5)
    residual = (degrade(x, "gauss_noise", generator=seeded(0)) - x) * 255
    variances = residual.flatten(2).var(dim=2)  # per image and channel
    # 196k samples per image: the sample variance is within +-1.5 of the drawn one (3 standard errors)
    assert float(variances.min()) > 250 - 1.5 and float(variances.max()) < 260 + 1.5
    assert float(residual.mean().abs()) < 0.1
    correlation = (residual[:, 0] * residual[:, 1]).mean() / residual[:, 0].std() / residual[:, 1].std()
    assert abs(float(correlation)) < 0.02  # independent per channel


def test_impulse_noise_multiplies_each_pixel_by_1_4_to_1_5():
    x = 0.2 + 0.4 * torch.rand(1, 3, 32, 32, generator=seeded(0))
    ratio = degrade(x, "impulse_noise", generator=seeded(1)) / x
    assert float(ratio.min()) >= 1.4 - 1e-5 and float(ratio.max()) <= 1.5 + 1e-5
    assert float(ratio.std()) > 0.02  # per pixel and channel, not one factor


def test_iso_noise_brightens_lightness_by_the_poisson_mean():
    # two halves at L = 0.3 and 0.7: std(L) = 0.2, mean Poisson count 0.2 * intensity * 255
    x = torch.full((1, 3, 64, 64), 0.3)
    x[..., 32:] = 0.7
    light = rgb_to_hls(degrade(x, "ISO_noise", generator=seeded(0)))[:, 1]
    gain = float(light[..., :32].mean()) - 0.3
    low, high = 0.2 * 0.7 * (1 - 0.3), 0.2 * 0.8 * (1 - 0.3)
    assert low - 0.01 < gain < high + 0.01


def test_poisson_draws_follow_the_poisson_distribution():
    counts = poisson(seeded(0), 3.0, (512, 512))
    for k in range(9):
        pmf = math.exp(-3.0) * 3.0**k / math.factorial(k)
        assert abs(float((counts == k).float().mean()) - pmf) < 0.003
    large = poisson(seeded(1), 55.0, (512, 512))
    assert abs(float(large.mean()) - 55.0) < 0.1 and abs(float(large.var()) - 55.0) < 1.0
    assert torch.equal(poisson(seeded(2), 0.0, (4, 4)), torch.zeros(4, 4))


def test_iso_noise_leaves_a_flat_image_unchanged():
    x = torch.full((1, 3, 16, 16), 0.4)
    assert torch.allclose(degrade(x, "ISO_noise", generator=seeded(0)), x, atol=1e-5)


def _block_boundary_ratio(y: torch.Tensor) -> float:
    """Mean |horizontal step| across 8-pixel block borders over the mean step inside blocks."""
    steps = (y[..., 1:] - y[..., :-1]).abs().mean(dim=(0, 1, 2))
    at_border = torch.arange(steps.shape[0]) % 8 == 7
    return float(steps[at_border].mean() / steps[~at_border].mean())


def test_compression_at_quality_5_to_10_leaves_8x8_blocks():
    x = smooth_images(batch=2, height=64, width=128)
    heavy = _block_boundary_ratio(degrade(x, "compression", generator=seeded(0)))
    light = _block_boundary_ratio(degrade(x, "compression", level=1, generator=seeded(0)))
    assert heavy > 1.5
    assert _block_boundary_ratio(x) < 1.1
    assert heavy > light


def test_jpeg_codec_matches_libjpeg():
    x = smooth_images(batch=1, height=48, width=64)
    pixels = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=8)
    reference = torch.from_numpy(np.array(Image.open(buffer))).permute(2, 0, 1)[None].float() / 255
    ours = jpeg(torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255, torch.tensor([8]))
    error = float((ours - reference).abs().mean())
    compression_error = float((x - reference).abs().mean())
    assert error < 0.15 * compression_error


def test_frosted_glass_takes_every_pixel_from_within_3_px():
    height, width = 40, 56
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    code = torch.stack([xs / 255.0, ys / 255.0, torch.zeros(height, width)])[None]  # pixel = its coordinates
    y = degrade(code, "frosted_glass_blur", generator=seeded(0))
    source_x, source_y = (y[0, 0] * 255).round(), (y[0, 1] * 255).round()
    dx, dy = source_x - xs, source_y - ys
    assert torch.allclose(y[0, 0] * 255, source_x, atol=1e-4)  # an exact input pixel, not a blend
    assert int(dx.abs().max()) == 3 and int(dy.abs().max()) == 3
    assert float(((dx == 0) & (dy == 0)).float().mean()) < 0.1


def test_resampling_blur_is_down_x4_and_up():
    x = smooth_images(batch=2, height=64, width=96)
    y = degrade(x, "resampling_blur")
    # an independent round trip: 4x4 block means, then bilinear back up
    reference = F.interpolate(F.avg_pool2d(x, 4), size=x.shape[-2:], mode="bilinear", align_corners=False)
    assert float((y - reference).abs().mean()) < 0.01
    assert float((y - x).abs().mean()) > 3 * float((y - reference).abs().mean())


def _spread(y: torch.Tensor) -> torch.Tensor:
    """Eigenvalues (ascending) of the second moments of a (H, W) intensity distribution."""
    weights = y / y.sum()
    ys, xs = torch.meshgrid(torch.arange(y.shape[0]), torch.arange(y.shape[1]), indexing="ij")
    mx, my = (weights * xs).sum(), (weights * ys).sum()
    cov = torch.tensor(
        [
            [(weights * (xs - mx) ** 2).sum(), (weights * (xs - mx) * (ys - my)).sum()],
            [(weights * (xs - mx) * (ys - my)).sum(), (weights * (ys - my) ** 2).sum()],
        ]
    )
    return torch.linalg.eigvalsh(cov)


def test_fast_fft_length_is_the_next_5_smooth_number():
    def smooth(n: int) -> bool:
        for prime in (2, 3, 5):
            while n % prime == 0:
                n //= prime
        return n == 1

    for n in range(1, 1200):
        length = fast_fft_length(n)
        assert length >= n and smooth(length) and not any(smooth(m) for m in range(n, length))


def test_motion_blur_smears_a_point_along_one_direction():
    x = torch.zeros(4, 3, 81, 81)
    x[..., 40, 40] = 1.0
    y = degrade(x, "motion_blur", generator=seeded(0))
    for image in y:
        small, large = _spread(image[0])
        assert large > 1.0 and large > 10 * max(float(small), 1e-3)
        assert math.isclose(float(image[0].sum()), 1.0, rel_tol=1e-3)  # energy kept, nothing clipped


def test_zoom_blur_grows_from_the_centre():
    x = smooth_images(batch=2, height=64, width=64)
    difference = (degrade(x, "zoom_blur", generator=seeded(0)) - x).abs().mean(dim=(0, 1))
    centre, corners = difference[28:36, 28:36].mean(), difference[:8, :8].mean()
    assert float(centre) < 0.3 * float(corners)


def test_elastic_transform_displaces_a_few_pixels():
    height, width = 96, 96
    ramp = torch.linspace(0, 1, width).expand(1, 3, height, width).clone()
    y = degrade(ramp, "elastic_transform", generator=seeded(0))
    shift = (y[0, 0] - ramp[0, 0])[8:-8, 8:-8] * (width - 1)  # horizontal displacement in px
    assert 0.5 < float(shift.std()) < 6.0
    assert float(shift.abs().max()) < 20.0


def test_color_jitter_keeps_grey_images_grey():
    x = torch.rand(4, 1, 16, 16, generator=seeded(0)).expand(4, 3, 16, 16)
    y = degrade(x, "color_jitter", generator=seeded(1))
    assert torch.allclose(y[:, 0], y[:, 1], atol=1e-4) and torch.allclose(y[:, 1], y[:, 2], atol=1e-4)
    assert not torch.allclose(y, x, atol=1e-2)


def test_per_pixel_hue_turn_then_lightness_equals_an_hls_round_trip():
    """What ISO_noise computes without converting to HLS and back."""
    x = torch.rand(2, 3, 16, 16, generator=seeded(0))
    x[0, :, :4] = 0.5  # grey
    x[1, :, :2] = 1.0  # white
    turns = 0.3 * torch.randn(2, 16, 16, generator=seeded(1))
    hls = rgb_to_hls(x)
    lightness = hls[:, 1:2]
    brighter = (lightness + 0.2 * torch.rand(2, 1, 16, 16, generator=seeded(2)) * (1 - lightness)).clamp(0, 1)
    hue = torch.remainder(hls[:, :1] + turns[:, None] * 2 * math.pi, 2 * math.pi)
    expected = hls_to_rgb(torch.cat([hue, brighter, hls[:, 2:]], dim=1))
    assert torch.allclose(with_lightness(rotate_hue(x, turns), lightness, brighter), expected, atol=1e-5)


def test_hue_rotation_matches_kornia():
    x = torch.rand(3, 3, 16, 16, generator=seeded(0))
    x[0] = 0.5  # grey: no hue to turn
    turns = torch.tensor([0.69, -0.7, 0.2])
    wrapped = torch.remainder(turns + 0.5, 1) - 0.5
    assert torch.allclose(rotate_hue(x, turns), adjust_hue(x, wrapped * 2 * math.pi), atol=1e-5)
    assert not torch.allclose(rotate_hue(x, turns)[1:], x[1:], atol=1e-2)


def test_snow_brightens_dark_pixels_by_2_5_and_adds_flakes():
    x = torch.full((1, 3, 128, 128), 0.1)  # lightness 0.1, under every snow point
    y = degrade(x, "snow", generator=seeded(0))
    assert math.isclose(float(y.median()), 0.25, abs_tol=0.01)
    assert float((y > 0.5).float().mean()) > 0.005  # flakes


def test_fog_veils_the_image_unevenly():
    x = torch.zeros(2, 3, 64, 64)
    y = degrade(x, "fog", generator=seeded(0))
    means = y.mean(dim=(1, 2, 3))
    assert float(means.min()) > 0.85 * 0.2 - 1e-3 and float(means.max()) < 0.85 * 0.72
    assert float(y[:, 0].flatten(1).std(dim=1).min()) > 0.01  # cloud layer, not a flat veil


def test_rain_darkens_and_draws_bright_streaks():
    x = torch.full((1, 3, 160, 160), 0.5)
    y = degrade(x, "rain", generator=seeded(0))
    assert math.isclose(float(y.median()), 0.5 * 0.85, abs_tol=1e-3)
    bright = (y[0, 0] > 0.5).float()
    assert float(bright.mean()) > 0.005
    # streaks (8-16 px long, ~2 px wide) run within 15 degrees of vertical: bright pixels 4 px
    # apart are far more often above each other than beside each other
    assert float((bright[4:] * bright[:-4]).sum()) > 3 * float((bright[:, 4:] * bright[:, :-4]).sum())


@pytest.mark.parametrize("kind", PUBLISHED)
def test_severity_is_monotone(kind):
    x = smooth_images(batch=4, height=64, width=64)
    distortion = [
        float((degrade(x, kind, level=level, generator=seeded(0)) - x).abs().mean()) for level in range(1, 6)
    ]
    assert all(a <= b + 1e-4 for a, b in zip(distortion, distortion[1:])), distortion
    assert distortion[-1] > distortion[0]


def test_mixed_degrade_is_reproducible_and_batch_independent():
    x = smooth_images(batch=3)
    y = mixed_degrade(x, generator=seeded(4))
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert torch.equal(y, mixed_degrade(x, generator=seeded(4)))
    assert not torch.allclose(y, mixed_degrade(x, generator=seeded(5)))
    generators = sample_generators(seeded(4), 3)
    singles = torch.cat([mixed_degrade(x[i : i + 1], generator=[g]) for i, g in enumerate(generators)])
    assert torch.allclose(y, singles, atol=1e-5)
    assert float((y - x).abs().mean()) > 0.01


def test_registering_a_new_type():
    def invert(images, generators, level):
        return 1 - images

    register("test_invert", invert)
    try:
        x = smooth_images(batch=1)
        assert torch.allclose(degrade(x, "test_invert"), 1 - x)
        with pytest.raises(ValueError, match="already registered"):
            register("test_invert", lambda images, generators, level: images)
    finally:
        del DEGRADATIONS["test_invert"]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda x: degrade(x[0], "fog"), "must be"),
        (lambda x: degrade(x, "blizzard"), "unknown degradation"),
        (lambda x: degrade(x, "fog", level=6), "level"),
        (lambda x: degrade(x, ["fog"]), "names for 2 images"),
        (lambda x: degrade(x, "fog", generator=[seeded(0)]), "generators for 2 images"),
        (lambda x: degrade((x * 255).byte(), "fog"), "floating"),
        (lambda x: degrade(x, "fog", out=x[:1]), "out must match"),
        (lambda x: degrade(x, "fog", out=x.double()), "out must match"),
    ],
)
def test_bad_arguments_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call(smooth_images())


@pytest.mark.cuda
@pytest.mark.parametrize("kind", ALL)
def test_cuda_matches_cpu(kind):
    x = smooth_images(batch=2)
    cpu = degrade(x, kind, generator=seeded(3))
    cuda = degrade(x.cuda(), kind, generator=seeded(3))
    assert cuda.device.type == "cuda"
    assert float((cuda.cpu() - cpu).abs().mean()) < 1e-3
