"""SAM prior tuning (SPT): a plug-in unit that feeds MAP-pooled SAM segments into a frozen restorer.

"A Dive into SAM Prior in Image Restoration" trains only a small unit inside a frozen pretrained
network. Its exact layers are not published in a form available to us, so this unit is OUR design:
a residual feature modulation. At one layer of the frozen network, with features F,

    P = MAP(F over the segments),  scale, shift = convs(P),  F' = F * (1 + scale) + shift,

where the last convs start at zero, so the tuned network starts exactly as the frozen one.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from .map_pool import MaskAveragePool


class PriorModulation(nn.Module):
    """F (B, C, H, W), labels (B, H', W') -> F * (1 + scale) + shift, scale/shift from MAP(F)."""

    def __init__(self, channels: int, hidden: int = 16, mask_dropout: float = 0.5) -> None:
        super().__init__()
        self.pool = MaskAveragePool(mask_dropout)
        self.body = nn.Sequential(nn.Conv2d(2 * channels, hidden, 3, padding=1), nn.GELU())
        self.scale = nn.Conv2d(hidden, channels, 3, padding=1)
        self.shift = nn.Conv2d(hidden, channels, 3, padding=1)
        for conv in (self.scale, self.shift):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(features, labels)
        hidden = self.body(torch.cat([features, pooled], dim=1))
        return features * (1 + self.scale(hidden)) + self.shift(hidden)


class PriorTunedNetwork(nn.Module):
    """A frozen restoration network with a PriorModulation on the output of its submodule `layer`.

    forward(labels, *inputs) runs the frozen network on `inputs` with the segments `labels`
    (B, H, W) modulating that layer's output. Only `self.unit` has trainable parameters.
    """

    def __init__(self, network: nn.Module, layer: str, channels: int, hidden: int = 16, mask_dropout: float = 0.5) -> None:
        super().__init__()
        self.network = network.requires_grad_(False).eval()
        self.unit = PriorModulation(channels, hidden, mask_dropout)
        self.layer = layer
        self._labels: Optional[torch.Tensor] = None
        network.get_submodule(layer).register_forward_hook(self._modulate)

    def _modulate(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if self._labels is None:
            return output
        return self.unit(output, self._labels)

    def train(self, mode: bool = True) -> "PriorTunedNetwork":
        """Trains the unit only; the frozen network stays in eval mode (fixed norms, no dropout)."""
        self.training = mode
        self.unit.train(mode)
        self.network.eval()
        return self

    def forward(self, labels: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        self._labels = labels
        try:
            return self.network(*inputs)
        finally:
            self._labels = None
