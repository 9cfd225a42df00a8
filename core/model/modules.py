"""The modules RobustSAM adds to SAM's decoder (spec section 3).

Attribute names are the state-dict names of the released checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from torch import nn

from .winograd import WinogradConv2d

_LEAKY_SLOPE = 0.01
_NORM_EPS = 1e-5


class AttentionSelector(nn.Module):
    """Weights for two branches on a 4x4 grid of cells, from their sum pooled to that grid."""

    def __init__(self, channels: int, grid: int = 4) -> None:
        super().__init__()
        self.grid = grid
        cells = channels * grid * grid
        self.fc = nn.Sequential(nn.Linear(cells, channels, bias=False), nn.ReLU())
        self.att_conv1 = nn.Linear(channels, cells)
        self.att_conv2 = nn.Linear(channels, cells)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The branches' sum average-pooled to (B, C, grid, grid) -> two weight grids of that shape
        that sum to one; each cell's weight holds for every position the cell covers."""
        b, c = pooled.shape[:2]
        z = self.fc(pooled.flatten(1))
        logits = torch.stack(
            (self.att_conv1(z).view(b, c, self.grid, self.grid), self.att_conv2(z).view(b, c, self.grid, self.grid))
        )
        a1, a2 = torch.softmax(logits, dim=0)
        return a1, a2


class SelectiveConv(nn.Module):
    """Mixes a batch-normalised and an instance-normalised 3x3 convolution of the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = WinogradConv2d(channels, channels, 3, padding=1, bias=False)
        self.conv2 = WinogradConv2d(channels, channels, 3, padding=1, bias=False)
        self.selector = AttentionSelector(channels)
        self.BN = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        o1 = self.conv1(F.leaky_relu(self.BN(x), _LEAKY_SLOPE))
        o2 = self.conv2(F.leaky_relu(F.instance_norm(x, eps=_NORM_EPS), _LEAKY_SLOPE))
        grid = self.selector.grid
        # Pooling is linear: pooling each branch spares materialising their sum.
        a1, a2 = self.selector(F.adaptive_avg_pool2d(o1, grid) + F.adaptive_avg_pool2d(o2, grid))
        return _mix_by_cells(o1, o2, a1, a2)


def _mix_by_cells(o1: torch.Tensor, o2: torch.Tensor, a1: torch.Tensor, a2: torch.Tensor) -> torch.Tensor:
    """o1 * a1 + o2 * a2 with the (B, C, g, g) weights nearest-upsampled to o's (B, C, H, W).

    When g divides H and W, cell (i, j) covers an exact block, so broadcasting the weights over a
    blocked view of o replaces the upsampled copies.
    """
    b, c, h, w = o1.shape
    g = a1.shape[-1]
    if h % g or w % g:
        size = (h, w)
        return o1 * F.interpolate(a1, size=size, mode="nearest") + o2 * F.interpolate(a2, size=size, mode="nearest")
    blocks, cells = (b, c, g, h // g, g, w // g), (b, c, g, 1, g, 1)
    return (o1.reshape(blocks) * a1.reshape(cells) + o2.reshape(blocks) * a2.reshape(cells)).view(b, c, h, w)


class SelectiveBranch(nn.Module):
    """Holds the selective convolution under the released name `SEMBlock.maxpool_conv.0`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.maxpool_conv = nn.Sequential(SelectiveConv(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class SqueezeExcitation(nn.Module):
    """Channel attention: scales each channel by a gate computed from the spatial mean."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.excitation = nn.Sequential(
            nn.Linear(channels, channels // reduction),
            nn.ReLU(),
            nn.Linear(channels // reduction, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        gate = self.excitation(x.mean(dim=(2, 3)))
        return x * gate[:, :, None, None]


class DegradationFeatureBlock(nn.Module):
    """[x, selective_conv(x)] with channel attention: (B, C, H, W) -> (B, 2C, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channel_attention = SqueezeExcitation(2 * channels)
        self.SEMBlock = SelectiveBranch(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_attention(torch.cat((x, self.SEMBlock(x)), dim=1))


class FourierAmplitudeFilter(nn.Module):
    """Filters the Fourier amplitude with a 1x1 convolution and keeps the phase.

    Computed on the half spectrum: the input is real, so its spectrum Z is Hermitian, |Z| and
    hence the filtered amplitude A' are even in frequency, and A' e^{i angle Z} is Hermitian
    again; the real part of its inverse transform is therefore `irfft2` of its half. A' e^{i angle Z}
    is Z scaled by the real gain A' / |Z|, which spares a complex division; where Z = 0 the angle
    is 0 (`angle(0) = 0`), so the result there is A' itself.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_layer = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W), computed in float32 whatever the autocast state."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            spectrum = torch.fft.rfft2(x.float())
            parts = torch.view_as_real(spectrum)
            # hypot over the real view is the vectorised |Z|; its gradient at Z = 0 is 0/0, where
            # that of `abs` is 0, so training keeps `abs`.
            amplitude = spectrum.abs() if torch.is_grad_enabled() else torch.hypot(parts[..., 0], parts[..., 1])
            filtered_amplitude = self.conv_layer(amplitude)
            if not torch.is_grad_enabled() and amplitude.device.type == "cpu" and amplitude.min() > 0:
                # Without zero bins the gain needs no guard: complex-by-real multiplication gives the
                # same bits as scaling the real view, with three fewer passes over the spectrum.
                return torch.fft.irfft2(spectrum * (filtered_amplitude / amplitude), s=x.shape[-2:]).to(x.dtype)
            nonzero = amplitude > 0
            # Dividing by 1 where Z = 0 keeps the gain, and so the gradient, finite; Z is 0 there,
            # so adding A' to the real part gives A' e^{i 0}.
            gain = filtered_amplitude / torch.where(nonzero, amplitude, 1.0)
            filtered = parts * gain.unsqueeze(-1)
            filtered[..., 0] += torch.where(nonzero, 0.0, filtered_amplitude)
            return torch.fft.irfft2(torch.view_as_complex(filtered), s=x.shape[-2:]).to(x.dtype)


class AMFGBlock(nn.Module):
    """Anti-degradation mask feature generation (spec 3.1).

    The robust path runs the degradation block, the Fourier filter and a 3x3 fusion before the
    tail; the clear path (the training teacher) is the tail alone.
    """

    def __init__(self, channels: int, tail_name: str, tail: nn.Module) -> None:
        super().__init__()
        self.dnc_block_combined = DegradationFeatureBlock(channels)
        self.fgm_block = FourierAmplitudeFilter(2 * channels)
        self.conv_layer = WinogradConv2d(2 * channels, channels, 3, padding=1)
        self.tail_name = tail_name
        self.add_module(tail_name, tail)
        self.use_fourier = True  # False only in ablations (RobustMaskDecoder.ablate)

    @property
    def tail(self) -> nn.Module:
        return getattr(self, self.tail_name)

    def forward(self, x: torch.Tensor, robust: bool = True) -> torch.Tensor:
        """(B, C, H, W) -> the tail's output."""
        if not robust:
            return self._tail(x)
        if self.runs_per_sample(x):
            return torch.cat([self._robust(sample) for sample in x.split(1)])
        return self._robust(x)

    def runs_per_sample(self, x: torch.Tensor) -> bool:
        """Whether the robust path takes the batch x one sample at a time: in eval mode every step
        is per sample (BatchNorm uses running statistics), and on a CPU one sample at a time keeps
        the (2C, H, W) intermediates small enough for the cache and for reused memory."""
        return not self.training and x.device.type == "cpu" and x.shape[0] > 1

    def _robust(self, x: torch.Tensor) -> torch.Tensor:
        features = self.dnc_block_combined(x)
        filtered = self.fgm_block(features) if self.use_fourier else features
        if not self.conv_layer.uses_winograd(filtered):
            # oneDNN's direct convolution of the narrow mask feature runs faster on channels-last
            # input, and its output then needs no reordering for the tail.
            filtered = filtered.contiguous(memory_format=torch.channels_last)
        return self._tail(self.conv_layer(filtered))

    def _tail(self, x: torch.Tensor) -> torch.Tensor:
        # Transposed and 3x3 convolutions run 1.2-3x faster on channels-last inputs on the CPU
        # (oneDNN), and the layer norms then normalise contiguous channel vectors.
        return self.tail(x.contiguous(memory_format=torch.channels_last))


class FusedLayerNorm2d(LayerNorm2d):
    """`segment_anything`'s LayerNorm2d (same parameters) as one `layer_norm` over the channels
    of a channels-last view, instead of eight elementwise passes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W), normalised over C at every position."""
        normed = F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias, self.eps)
        return normed.permute(0, 3, 1, 2)


def upsample_tail(in_channels: int, mid_channels: int, out_channels: int) -> nn.Sequential:
    """x4 upsampling like SAM's `output_upscaling`, ending without activation."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, mid_channels, 2, stride=2),
        FusedLayerNorm2d(mid_channels),
        nn.GELU(),
        nn.ConvTranspose2d(mid_channels, out_channels, 2, stride=2),
    )


def conv_tail(channels: int) -> nn.Sequential:
    """Resolution-keeping 3x3 convolutions for the mask feature."""
    return nn.Sequential(
        nn.Conv2d(channels, 2 * channels, 3, 1, 1),
        FusedLayerNorm2d(2 * channels),
        nn.GELU(),
        nn.Conv2d(2 * channels, channels, 3, 1, 1),
    )


class TokenRefiner(nn.Module):
    """AOTG (spec 3.4): a token normalised twice, its first quarter through a two-layer MLP."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim // 4, dim // 4), nn.ReLU(), nn.Linear(dim // 4, dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(..., dim) -> (..., dim)."""
        normed = F.layer_norm(F.layer_norm(tokens, (self.dim,), eps=_NORM_EPS), (self.dim,), eps=_NORM_EPS)
        return self.mlp(normed[..., : self.dim // 4])
