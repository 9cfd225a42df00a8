"""Dehazing network with a SAM prior: a compact U-Net whose input is RGB plus one prior channel.

The dehazing work this follows widened the first layer of an existing network (U-Net, Uformer,
Restormer) by one channel. We bundle the U-Net: it is the smallest of the three, trains on a CPU
for demos, and the prior enters it exactly as there (one extra input channel, nothing else). The
prior channel is the gray-coded mask map / 255, or for the baseline a grayscale copy of the input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class PriorUNet(nn.Module):
    """forward(image (B, 3, H, W) in [0, 1], prior (B, 1, H, W) in [0, 1]) -> (B, 3, H, W), any H, W.

    `levels` poolings (channels width * 2^level), transposed-conv upsampling, concatenated skips,
    and a global residual on the input image. Inputs are edge-padded to a multiple of 2^levels.
    """

    def __init__(self, width: int = 32, levels: int = 4, prior_channels: int = 1) -> None:
        super().__init__()
        self.config = {"width": width, "levels": levels, "prior_channels": prior_channels}
        self.encoders = nn.ModuleList()
        channels = [width * 2**level for level in range(levels + 1)]
        in_channels = 3 + prior_channels
        for level in range(levels):
            self.encoders.append(_double_conv(in_channels, channels[level]))
            in_channels = channels[level]
        self.middle = _double_conv(channels[levels - 1], channels[levels])
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(levels)):
            self.ups.append(nn.ConvTranspose2d(channels[level + 1], channels[level], 2, stride=2))
            self.decoders.append(_double_conv(2 * channels[level], channels[level]))
        self.ending = nn.Conv2d(width, 3, 1)
        self.multiple = 2**levels

    def forward(self, image: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        x = torch.cat([image, prior], dim=1)
        x = F.pad(x, (0, -width % self.multiple, 0, -height % self.multiple), mode="replicate")
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.middle(x)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = decoder(torch.cat([up(x), skip], dim=1))
        return self.ending(x)[..., :height, :width] + image
