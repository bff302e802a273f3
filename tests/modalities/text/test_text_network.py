"""TextDenoiserNet: the time modulation (AdaLN) must survive copy.deepcopy (the Trainer's EMA eval copy)."""

import copy

import torch

from multidiff.modalities.text.network import TextDenoiserNet


def _net_with_active_adaln() -> TextDenoiserNet:
    torch.manual_seed(0)
    net = TextDenoiserNet(vocab_size=30, embed_dim=8, hidden=32, layers=2, heads=2, dropout=0.0, max_len=16)
    for lin in net.adaln:                    # zero-initialised: give them weights so modulation shows
        torch.nn.init.normal_(lin.weight, std=0.5)
    return net.eval()


def test_adaln_changes_the_output():
    net = _net_with_active_adaln()
    x, c = torch.randn(3, 7, 8), torch.tensor([-2.0, 0.0, 3.0])
    with torch.no_grad():
        with_mod = net(x, c)
        for lin in net.adaln:
            torch.nn.init.zeros_(lin.weight)
        without = net(x, c)
    assert (with_mod - without).abs().max() > 1e-2


def test_deepcopy_uses_its_own_modulation():
    net = _net_with_active_adaln()
    twin = copy.deepcopy(net)
    x, c = torch.randn(3, 7, 8), torch.tensor([-2.0, 0.0, 3.0])
    with torch.no_grad():
        torch.testing.assert_close(twin(x, c), net(x, c))
        for lin in net.adaln:                # changing the original must not change the copy
            lin.weight.mul_(-1.0)
        assert (twin(x, c) - net(x, c)).abs().max() > 1e-2
        for lin in twin.adaln:
            lin.weight.mul_(-1.0)
        torch.testing.assert_close(twin(x, c), net(x, c))
