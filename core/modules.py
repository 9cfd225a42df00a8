"""The modules RobustSAM adds to SAM's decoder (spec section 3).

Attribute names are the state-dict names of the released checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from torch import nn

_LEAKY_SLOPE = 0.01
_NORM_EPS = 1e-5


class AttentionSelector(nn.Module):
    """Per-position weights for two branches from their sum, pooled to a 4x4 grid."""

    def __init__(self, channels: int, grid: int = 4) -> None:
        super().__init__()
        self.grid = grid
        cells = channels * grid * grid
        self.fc = nn.Sequential(nn.Linear(cells, channels, bias=False), nn.ReLU())
        self.att_conv1 = nn.Linear(channels, cells)
        self.att_conv2 = nn.Linear(channels, cells)

    def forward(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """u: (B, C, H, W) -> two weight maps (B, C, H, W) that sum to one."""
        b, c, h, w = u.shape
        z = self.fc(F.adaptive_avg_pool2d(u, self.grid).flatten(1))
        logits = torch.stack(
            (self.att_conv1(z).view(b, c, self.grid, self.grid), self.att_conv2(z).view(b, c, self.grid, self.grid))
        )
        a1, a2 = torch.softmax(logits, dim=0)
        return F.interpolate(a1, size=(h, w), mode="nearest"), F.interpolate(a2, size=(h, w), mode="nearest")


class SelectiveConv(nn.Module):
    """Mixes a batch-normalised and an instance-normalised 3x3 convolution of the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.selector = AttentionSelector(channels)
        self.BN = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        o1 = self.conv1(F.leaky_relu(self.BN(x), _LEAKY_SLOPE))
        o2 = self.conv2(F.leaky_relu(F.instance_norm(x, eps=_NORM_EPS), _LEAKY_SLOPE))
        a1, a2 = self.selector(o1 + o2)
        return o1 * a1 + o2 * a2


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
    """Filters the Fourier amplitude with a 1x1 convolution and keeps the phase."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_layer = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W), computed in float32 whatever the autocast state."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            spectrum = torch.fft.fft2(x.float())
            filtered = torch.polar(self.conv_layer(spectrum.abs()), spectrum.angle())
            return torch.fft.ifft2(filtered).real.to(x.dtype)


class AMFGBlock(nn.Module):
    """Anti-degradation mask feature generation (spec 3.1).

    The robust path runs the degradation block, the Fourier filter and a 3x3 fusion before the
    tail; the clear path (the training teacher) is the tail alone.
    """

    def __init__(self, channels: int, tail_name: str, tail: nn.Module) -> None:
        super().__init__()
        self.dnc_block_combined = DegradationFeatureBlock(channels)
        self.fgm_block = FourierAmplitudeFilter(2 * channels)
        self.conv_layer = nn.Conv2d(2 * channels, channels, 3, padding=1)
        self.tail_name = tail_name
        self.add_module(tail_name, tail)

    @property
    def tail(self) -> nn.Module:
        return getattr(self, self.tail_name)

    def forward(self, x: torch.Tensor, robust: bool = True) -> torch.Tensor:
        """(B, C, H, W) -> the tail's output."""
        if robust:
            x = self.conv_layer(self.fgm_block(self.dnc_block_combined(x)))
        return self.tail(x)


def upsample_tail(in_channels: int, mid_channels: int, out_channels: int) -> nn.Sequential:
    """x4 upsampling like SAM's `output_upscaling`, ending without activation."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, mid_channels, 2, stride=2),
        LayerNorm2d(mid_channels),
        nn.GELU(),
        nn.ConvTranspose2d(mid_channels, out_channels, 2, stride=2),
    )


def conv_tail(channels: int) -> nn.Sequential:
    """Resolution-keeping 3x3 convolutions for the mask feature."""
    return nn.Sequential(
        nn.Conv2d(channels, 2 * channels, 3, 1, 1),
        LayerNorm2d(2 * channels),
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
