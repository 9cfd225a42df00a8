"""NAFNet (Chen et al., ECCV 2022) and SAM-Deblur's NAFNet with a Mask Average Pooling prior."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .map_pool import MaskAveragePool


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of every pixel of a (B, C, H, W) map, with affine weight and bias."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class SimpleGate(nn.Module):
    """Splits the channels in two halves and multiplies them: (B, 2C, H, W) -> (B, C, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = x.chunk(2, dim=1)
        return first * second


class NAFBlock(nn.Module):
    """NAFNet's block: gated depthwise-conv mixer with simplified channel attention, then a gated FFN.

    Both residual branches are scaled by learnable beta / gamma that start at zero.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = 2 * channels
        self.norm1 = LayerNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, hidden, 1)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.gate = SimpleGate()
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, channels, 1))
        self.conv3 = nn.Conv2d(channels, channels, 1)
        self.norm2 = LayerNorm2d(channels)
        self.conv4 = nn.Conv2d(channels, hidden, 1)
        self.conv5 = nn.Conv2d(channels, channels, 1)
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.gate(self.conv2(self.conv1(self.norm1(inp))))
        x = self.conv3(x * self.sca(x))
        y = inp + x * self.beta
        x = self.conv5(self.gate(self.conv4(self.norm2(y))))
        return y + x * self.gamma


class NAFNet(nn.Module):
    """NAFNet U-shaped restorer: (B, in_channels, H, W) -> (B, 3, H, W) for any H, W.

    The first three input channels are the degraded RGB image in [0, 1]; the output is the ending
    conv plus that image (global residual). Inputs are zero-padded to a multiple of 2^levels.
    """

    def __init__(
        self,
        in_channels: int = 3,
        width: int = 32,
        enc_blocks: Sequence[int] = (1, 1, 1, 28),
        middle_blocks: int = 1,
        dec_blocks: Sequence[int] = (1, 1, 1, 1),
    ) -> None:
        super().__init__()
        if len(enc_blocks) != len(dec_blocks):
            raise ValueError("NAFNet needs as many decoder levels as encoder levels")
        self.config = {
            "in_channels": in_channels,
            "width": width,
            "enc_blocks": list(enc_blocks),
            "middle_blocks": middle_blocks,
            "dec_blocks": list(dec_blocks),
        }
        self.intro = nn.Conv2d(in_channels, width, 3, padding=1)
        self.ending = nn.Conv2d(width, 3, 3, padding=1)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        channels = width
        for count in enc_blocks:
            self.encoders.append(nn.Sequential(*[NAFBlock(channels) for _ in range(count)]))
            self.downs.append(nn.Conv2d(channels, 2 * channels, 2, stride=2))
            channels *= 2
        self.middle = nn.Sequential(*[NAFBlock(channels) for _ in range(middle_blocks)])
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for count in dec_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(channels, 2 * channels, 1, bias=False), nn.PixelShuffle(2)))
            channels //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(channels) for _ in range(count)]))
        self.multiple = 2 ** len(enc_blocks)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        height, width = inp.shape[-2:]
        x = F.pad(inp, (0, -width % self.multiple, 0, -height % self.multiple))
        image = x[:, :3]
        x = self.intro(x)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle(x)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            x = decoder(up(x) + skip)
        x = self.ending(x) + image
        return x[..., :height, :width]


class MapPriorNAFNet(nn.Module):
    """SAM-Deblur: NAFNet whose input is RGB plus a 2-channel MAP-pooled prior.

    forward(image (B, 3, H, W) in [0, 1], labels (B, H, W) segment partition) -> (B, 3, H, W).
    Prior pathway: Conv3x3(3 -> 2), Conv1x1(2 -> 2), MAP over the segments (mask dropout in training).
    """

    def __init__(
        self,
        width: int = 32,
        enc_blocks: Sequence[int] = (1, 1, 1, 28),
        middle_blocks: int = 1,
        dec_blocks: Sequence[int] = (1, 1, 1, 1),
        mask_dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.prior = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.Conv2d(2, 2, 1))
        self.pool = MaskAveragePool(mask_dropout)
        self.nafnet = NAFNet(5, width, enc_blocks, middle_blocks, dec_blocks)
        self.config = {**self.nafnet.config, "mask_dropout": mask_dropout}
        del self.config["in_channels"]

    def forward(self, image: torch.Tensor, labels: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        prior = self.pool(self.prior(image), labels, generator)
        return self.nafnet(torch.cat([image, prior], dim=1))
