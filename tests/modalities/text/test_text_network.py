"""TextDenoiserNet: the time modulation (AdaLN) must survive copy.deepcopy (the Trainer's EMA eval copy);
the end-position embedding gives each position its distance to the row's last real position."""

import copy

import torch

from multidiff.modalities.text.network import TextDenoiserNet, positions_from_end


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


def test_positions_from_end_count_down_to_each_rows_last_real_position():
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    want = torch.tensor([[2, 1, 0, 0, 0], [4, 3, 2, 1, 0], [0, 0, 0, 0, 0]])
    torch.testing.assert_close(positions_from_end(mask, 3, 5, "cpu"), want)
    torch.testing.assert_close(positions_from_end(None, 2, 3, "cpu"), torch.tensor([[2, 1, 0], [2, 1, 0]]))


def test_end_positions_add_the_embedding_of_each_positions_distance_to_the_end():
    """The encoder's input differs from the plain network's by end_emb[n - 1 - i] at real position i."""
    torch.manual_seed(0)
    net = TextDenoiserNet(vocab_size=30, embed_dim=8, hidden=32, layers=1, heads=2, dropout=0.0, max_len=16,
                          end_positions=True).eval()
    seen = []
    net.encoder.register_forward_hook(lambda m, a, kw, out: seen.append(kw["inputs_embeds"]), with_kwargs=True)
    x, c, mask = torch.randn(2, 5, 8), torch.zeros(2), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    with torch.no_grad():
        net(x, c, attention_mask=mask)                 # zero-initialised: the plain network's input
        torch.nn.init.normal_(net.end_emb.weight, std=1.0)
        net(x, c, attention_mask=mask)
    diff, W = seen[1] - seen[0], net.end_emb.weight
    torch.testing.assert_close(diff[0, :3], W[[2, 1, 0]])
    torch.testing.assert_close(diff[1], W[[4, 3, 2, 1, 0]])


def test_saved_networks_without_the_option_build_as_before():
    net = TextDenoiserNet(vocab_size=30, embed_dim=8, hidden=32, layers=1, heads=2, max_len=16)
    assert net.end_emb is None and not any(k.startswith("end_emb") for k in net.state_dict())
