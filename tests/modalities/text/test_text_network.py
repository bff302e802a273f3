"""TextDenoiserNet: the time modulation (AdaLN) must survive copy.deepcopy (the Trainer's EMA eval copy);
the end-position embedding gives each position its distance to the row's last real position; dropout acts
inside the encoder but, unless asked, not on its (noisy) input."""

import copy

import pytest
import torch

from multidiff.errors import ConfigError
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


def _encoder_input_and_output(net: TextDenoiserNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One training-mode pass: what the first encoder layer receives, and the network's logits."""
    seen = []
    hook = net.encoder.encoder.layer[0].register_forward_pre_hook(
        lambda m, a, kw: seen.append(a[0] if a else kw["hidden_states"]), with_kwargs=True)
    try:
        out = net(x, torch.zeros(x.shape[0]))
    finally:
        hook.remove()
    return seen[0], out


@pytest.mark.parametrize("input_dropout", [0.0, 0.5])
def test_dropout_spares_the_noisy_input_unless_asked(input_dropout):
    torch.manual_seed(0)
    net = TextDenoiserNet(vocab_size=30, embed_dim=8, hidden=32, layers=2, heads=2, dropout=0.3, max_len=16,
                          input_dropout=input_dropout, adaln=False).train()
    x = torch.randn(2, 6, 8)
    (in1, out1), (in2, out2) = _encoder_input_and_output(net, x), _encoder_input_and_output(net, x)
    assert (out1 - out2).abs().max() > 1e-3              # dropout is active inside the encoder
    if input_dropout == 0.0:
        torch.testing.assert_close(in1, in2)             # the encoder's input is not dropped
    else:
        assert ((in1 == 0) != (in2 == 0)).any()          # about half the coordinates zeroed, not the same


def test_input_dropout_out_of_range_is_refused():
    with pytest.raises(ConfigError, match="input_dropout"):
        TextDenoiserNet(vocab_size=30, embed_dim=8, hidden=32, layers=1, heads=2, max_len=16, input_dropout=1.0)
