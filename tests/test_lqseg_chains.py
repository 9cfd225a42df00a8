"""LQSeg's training chains against a hand-computed case: with noise, JPEG and resizing held at the identity
and both blurs forced, an impulse comes out blurred twice by the first kernel and rounded to 8 bits
(the released loader), or once by each kernel (the YAML's intent)."""

from __future__ import annotations

import importlib

import pytest
import torch

from core.degradations.lqseg import lqseg_training

module = importlib.import_module("core.degradations.lqseg")  # `core.degradations.lqseg` is also the function's name

BOX = torch.full((3, 3), 1 / 9, dtype=torch.float64)
DELTA = torch.zeros(3, 3, dtype=torch.float64)
DELTA[1, 1] = 1.0


@pytest.fixture()
def only_blurs(monkeypatch):
    """The chain with its random parts held still: the first kernel a 3x3 box, the second a delta."""
    kernels = iter([BOX, DELTA])
    monkeypatch.setattr(module, "blur_kernel", lambda generator, sigma: next(kernels))
    monkeypatch.setattr(module, "add_noise", lambda image, generator, *args: image)
    monkeypatch.setattr(module, "_jpeg", lambda image, generator: image)
    monkeypatch.setattr(module, "resize", lambda image, size, mode: image)
    monkeypatch.setattr(module, "SECOND_BLUR_PROBABILITY", 1.0)
    monkeypatch.setattr(module, "FINAL_SINC_PROBABILITY", 0.0)


def _impulse() -> torch.Tensor:
    image = torch.zeros(1, 3, 7, 7)
    image[..., 3, 3] = 1.0
    return image


def _expected(levels: list[list[int]]) -> torch.Tensor:
    """The 8-bit values around the centre of a 7x7 image, /255."""
    out = torch.zeros(1, 3, 7, 7)
    size = len(levels)
    start = 3 - size // 2
    out[..., start : start + size, start : start + size] = torch.tensor(levels, dtype=torch.float32)
    return out / 255


@pytest.mark.usefixtures("only_blurs")
def test_the_released_chain_blurs_twice_with_the_first_kernel_and_rounds_to_8_bits() -> None:
    # box * box on an impulse: [1, 2, 3, 2, 1] x [1, 2, 3, 2, 1] / 81, times 255, rounded
    expected = _expected([[3, 6, 9, 6, 3], [6, 13, 19, 13, 6], [9, 19, 28, 19, 9], [6, 13, 19, 13, 6], [3, 6, 9, 6, 3]])
    out = lqseg_training(_impulse(), torch.Generator().manual_seed(0), level=1, chain="released")
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


@pytest.mark.usefixtures("only_blurs")
def test_the_yaml_chain_blurs_with_its_second_kernel() -> None:
    # box then delta: 255 / 9 = 28.33 -> 28 over the 3x3
    out = lqseg_training(_impulse(), torch.Generator().manual_seed(0), level=1, chain="yaml")
    torch.testing.assert_close(out, _expected([[28] * 3] * 3), atol=1e-6, rtol=0)


def test_an_unknown_chain_is_refused() -> None:
    with pytest.raises(ValueError, match="released, yaml"):
        lqseg_training(_impulse(), chain="intent")
