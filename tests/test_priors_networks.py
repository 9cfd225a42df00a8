"""Restoration networks: shapes for odd sizes, where the prior enters, and the SPT unit."""

import pytest
import torch
from torch import nn

from priors.nafnet import MapPriorNAFNet, NAFBlock, NAFNet
from priors.spt import PriorTunedNetwork
from priors.unet import PriorUNet

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_nafnet(**kwargs):
    return NAFNet(width=8, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1), **kwargs)


@pytest.mark.parametrize("size", [(17, 23), (16, 16), (5, 9)])
def test_networks_keep_shape_for_odd_sizes(size):
    torch.manual_seed(0)
    image = torch.rand(2, 3, *size)
    labels = torch.randint(0, 3, (2, *size))
    assert _tiny_nafnet()(image).shape == image.shape
    prior_net = MapPriorNAFNet(width=8, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1)).eval()
    assert prior_net(image, labels).shape == image.shape
    assert PriorUNet(width=4, levels=3)(image, image[:, :1]).shape == image.shape


def test_spec_default_nafnet_layout():
    net = MapPriorNAFNet()
    assert net.nafnet.intro.in_channels == 5 and net.nafnet.intro.out_channels == 32
    assert [len(e) for e in net.nafnet.encoders] == [1, 1, 1, 28]
    assert len(net.nafnet.middle) == 1 and [len(d) for d in net.nafnet.decoders] == [1, 1, 1, 1]
    assert net.nafnet.multiple == 16 and net.nafnet.middle[0].conv1.in_channels == 512
    assert [tuple(m.weight.shape) for m in net.prior] == [(2, 3, 3, 3), (2, 2, 1, 1)]
    # NAFNet-GoPro-width32 has 17.11 M parameters; the prior adds the two convs and 2 intro channels.
    plain = sum(p.numel() for p in NAFNet().parameters())
    assert round(plain / 1e6, 2) == 17.11
    assert sum(p.numel() for p in net.parameters()) - plain == (54 + 2) + (4 + 2) + 2 * 32 * 9


def test_nafnet_starts_as_intro_ending_plus_residual():
    # beta and gamma start at zero, so every block is the identity at initialisation.
    torch.manual_seed(0)
    block = NAFBlock(6)
    x = torch.randn(1, 6, 5, 5)
    torch.testing.assert_close(block(x), x)
    block.beta.data.fill_(1.0)
    assert not torch.allclose(block(x), x)


def test_prior_changes_output_only_through_segments():
    torch.manual_seed(0)
    net = MapPriorNAFNet(width=8, enc_blocks=(1,), middle_blocks=1, dec_blocks=(1,)).eval()
    image = torch.rand(1, 3, 12, 12)
    one = torch.zeros(1, 12, 12, dtype=torch.int64)
    halves = one.clone()
    halves[..., 6:] = 1
    assert not torch.allclose(net(image, one), net(image, halves))
    # relabelling the same partition changes nothing
    torch.testing.assert_close(net(image, halves), net(image, 1 - halves))


def test_prior_unet_global_residual_and_prior_dependence():
    torch.manual_seed(0)
    net = PriorUNet(width=4, levels=2)
    nn.init.zeros_(net.ending.weight)
    nn.init.zeros_(net.ending.bias)
    image = torch.rand(1, 3, 10, 10)
    torch.testing.assert_close(net(image, torch.rand(1, 1, 10, 10)), image)
    net = PriorUNet(width=4, levels=2)
    assert not torch.allclose(net(image, torch.zeros(1, 1, 10, 10)), net(image, torch.ones(1, 1, 10, 10)))


class _Frozen(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 6, 3, padding=1)
        self.tail = nn.Conv2d(6, 3, 3, padding=1)

    def forward(self, x):
        return self.tail(torch.relu(self.head(x)))


def test_spt_starts_as_frozen_network_and_trains_only_the_unit():
    torch.manual_seed(0)
    base = _Frozen()
    image = torch.rand(2, 3, 12, 12)
    reference = base(image).detach()
    tuned = PriorTunedNetwork(base, "head", channels=6, hidden=4)
    labels = torch.randint(0, 4, (2, 12, 12))
    torch.testing.assert_close(tuned(labels, image), reference)
    trainable = [name for name, p in tuned.named_parameters() if p.requires_grad]
    assert trainable and all(name.startswith("unit.") for name in trainable)
    tuned.train()
    assert not base.training
    optimizer = torch.optim.SGD([p for p in tuned.parameters() if p.requires_grad], lr=0.1)
    loss = (tuned(labels, image) - image).pow(2).mean()
    loss.backward()
    optimizer.step()
    tuned.eval()
    after = tuned(labels, image)
    assert not torch.allclose(after, reference)
    torch.testing.assert_close(base(image), reference)  # frozen weights untouched, hook inactive outside
    assert not torch.allclose(after, tuned(torch.zeros_like(labels), image))  # the segments matter


def test_spt_parameters_are_frozen_network_independent():
    base = _Frozen()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    PriorTunedNetwork(base, "head", channels=6)
    assert all(not p.requires_grad for p in base.parameters())
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
