"""The audio modality end to end (read -> prepare -> encode -> decode -> state) and the U-Net."""

import pytest
import torch

from multidiff.errors import ConfigError, MismatchError
from multidiff.modalities import get
from multidiff.modalities.audio import AudioModality, GriffinLimVocoder
from multidiff.modalities.audio.synthetic import CLASSES, make_synthetic_set
from multidiff.nn.unet import UNet2D


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    make_synthetic_set(d, per_speaker=1, speakers=["flute", "reed"])
    return d


def test_registered():
    assert get("audio") is AudioModality


def test_synthetic_set_is_deterministic(tmp_path):
    a = make_synthetic_set(tmp_path / "a", per_speaker=1, speakers=["bell"], labels=["rise", "trill"], seed=3)
    b = make_synthetic_set(tmp_path / "b", per_speaker=1, speakers=["bell"], labels=["rise", "trill"], seed=3)
    assert [p.name for p in a] == ["rise_bell_0.wav", "trill_bell_0.wav"]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))
    assert len(CLASSES) == 10


def test_read_prepare_encode_decode_state(synth, tmp_path):
    m = AudioModality()
    items, skipped = m.read(synth)
    assert len(items) == 20 and not skipped
    assert {it["speaker"] for it in items} == {"flute", "reed"}
    m.prepare(items)
    m.prepare(items)  # idempotent
    assert m.labels == sorted(CLASSES) and m.null_cond() == {"label": 10}
    enc = m.encode(items[:4])
    F_, T = 64, 125
    assert enc.x0.shape == (4, 1, F_, T) and enc.mask is None
    assert enc.cond["label"].tolist() == [m.labels.index(it["label"]) for it in items[:4]]
    x_all = m.encode(items).x0
    assert abs(float(x_all.mean())) < 0.05 and abs(float(x_all.std()) - 0.5) < 0.05  # EDM sigma_data
    assert m.units() == ("dim", F_ * T)

    shape, cond = m.sample_shape(12)
    assert shape == (12, 1, F_, T) and cond.cond["label"].tolist() == [i % 10 for i in range(12)]
    assert m.sample_shape(2, label="trill")[1].cond["label"].tolist() == [m.labels.index("trill")] * 2
    assert m.sample_shape(2, label=3)[1].cond["label"].tolist() == [3, 3]
    with pytest.raises(ConfigError, match="unknown label"):
        m.sample_shape(1, label="nope")

    waves = m.decode(enc.x0[:2])
    assert len(waves) == 2 and waves[0].shape == (8000,)
    # decoding the encoded clip gives back the clip's mel (Griffin-Lim, 32 iterations)
    rec = m.preset.log_mel(waves[0])
    assert (rec - m.denormalise(enc.x0[0, 0])).abs().mean() < 0.6
    paths = m.write_samples(waves, tmp_path / "out", labels=enc.cond["label"][:2])
    assert [p.name for p in paths] == [f"{items[0]['label']}_000.wav", f"{items[1]['label']}_001.wav"]

    meta, tensors = m.state()
    m2 = AudioModality()
    m2.load_state(meta, tensors)
    assert torch.equal(m2.encode(items[:2]).x0, enc.x0[:2]) and m2.labels == m.labels
    other = AudioModality({"preset": "hifigan-22k"})
    with pytest.raises(MismatchError, match="speech-8k.*hifigan-22k"):
        other.load_state(meta, tensors)
    with pytest.raises(MismatchError, match="hifigan-22k"):
        m.vocoder = GriffinLimVocoder("hifigan-22k")


def test_mask_padding_and_global_normalisation(synth):
    m = AudioModality({"padding": "mask", "normalisation": "global", "clip_seconds": 1.5})
    items, _ = m.read(synth)
    m.prepare(items)
    enc = m.encode(items[:3])
    T = m.num_frames
    assert enc.mask.shape == (3, 1, 1, T) and T == 188
    real = enc.mask.sum(-1).flatten()
    assert all(0 < r < T for r in real.tolist())  # clips are shorter than 1.5 s
    assert m.mean.unique().numel() == 1


def test_unlabelled_data_is_unconditional(synth):
    m = AudioModality({"label_pattern": None})
    items, _ = m.read(synth)
    m.prepare(items)
    assert m.labels == [] and m.null_cond() == {}
    assert "label" not in m.encode(items[:2]).cond
    assert m.sample_shape(3) == ((3, 1, 64, 125), None)
    net = m.denoiser_net({})
    assert net(torch.randn(1, 1, 64, 125), torch.zeros(1)).shape == (1, 1, 64, 125)


def _randomise_output(net):
    torch.manual_seed(0)
    for mod in net.modules():  # undo the zero inits so the output depends on everything
        if isinstance(mod, (torch.nn.Conv1d, torch.nn.Conv2d)) and mod.weight.abs().sum() == 0:
            torch.nn.init.normal_(mod.weight, std=0.05)


def test_unet_shapes_labels_and_null_label():
    net = UNet2D(num_classes=3, channels=8, channel_mults=(1, 2, 2), attention_levels=(2,))
    _randomise_output(net)
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params < 200_000
    for F_, T in [(16, 32), (20, 37), (7, 5)]:
        x = torch.randn(2, 1, F_, T)
        assert net(x, torch.zeros(2), torch.tensor([0, 1])).shape == (2, 1, F_, T)
    x = torch.randn(2, 1, 16, 33)
    c = torch.tensor([0.3, -0.5])
    a = net(x, c, torch.tensor([0, 0]))
    b = net(x, c, torch.tensor([1, 1]))
    assert (a - b).abs().mean() > 1e-4  # the label changes the output
    null = net(x, c, None)
    assert torch.allclose(null, net(x, c, torch.tensor([3, 3])))  # None = the null label (index num_classes)
    assert (null - a).abs().mean() > 1e-4
    assert (net(x, c + 1.0, torch.tensor([0, 0])) - a).abs().mean() > 1e-4  # the noise level matters


def test_unet_sees_absolute_time_position():
    net = UNet2D(num_classes=0, channels=8, channel_mults=(1, 2), attention_levels=(), mid_attention=False)
    _randomise_output(net)
    x = torch.zeros(1, 1, 8, 32)  # translation invariant input: only the position channels vary in time
    out = net(x, torch.zeros(1))[0, 0]
    assert (out[:, 4] - out[:, 27]).abs().mean() > 1e-4


def test_one_d_unet_takes_the_mel_bins_as_channels(tmp_path):
    """`dims: 1`: every bin of a frame reaches every output bin; frames interact locally (no attention)."""
    from multidiff.model import DiffusionConfig, DiffusionModel
    from multidiff.modalities.audio.modality import MelBinsAsChannels
    m = AudioModality({"preset": {"base": "speech-8k", "n_mels": 16}, "clip_seconds": 0.256})
    m.labels = ["a", "b"]
    m.mean, m.std = torch.full((16, 1), -5.0), torch.ones(16, 1)
    cfg = {"dims": 1, "channels": 16, "channel_mults": [1, 2], "attention_levels": [], "mid_attention": False}
    model = DiffusionModel(m, cfg, DiffusionConfig())
    net = model.net
    assert isinstance(net, MelBinsAsChannels) and isinstance(net.unet.conv_in, torch.nn.Conv1d)
    _randomise_output(net)
    for T in (32, 37, 5):
        assert net(torch.randn(2, 1, 16, T), torch.zeros(2), torch.tensor([0, 1])).shape == (2, 1, 16, T)
    x, c = torch.randn(1, 1, 16, 64), torch.zeros(1)
    bump = x.clone()
    bump[0, 0, 0, 10] += 1.0                                   # lowest bin, frame 10
    diff = (net(bump, c) - net(x, c))[0, 0].abs()
    assert diff[15, 10] > 1e-4                                  # the top bin of the same frame changes
    near, far = diff[:, 6:15].mean(), diff[:, 40:].mean()       # far frames: only GroupNorm's statistics
    assert near > 5 * far, (near, far)                         # 15x here
    model.save_pretrained(tmp_path / "m")                      # `dims` is saved with the model
    back = DiffusionModel.from_pretrained(tmp_path / "m", ema=False)
    assert torch.equal(back.net(x, c), net(x, c))
    with pytest.raises(ConfigError, match="dims must be 1 or 2"):
        m.denoiser_net({"dims": 3})


def test_default_net_size_and_bf16():
    m = AudioModality()
    m.labels = [str(i) for i in range(10)]
    net = m.denoiser_net({})
    n = sum(p.numel() for p in net.parameters())
    assert 1_000_000 <= n <= 3_000_000
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(torch.randn(1, 1, 64, 125), torch.zeros(1), torch.tensor([1]))
    assert y.shape == (1, 1, 64, 125) and torch.isfinite(y.float()).all()


def test_contrast_is_the_clip_played_backwards(synth):
    """The `contrast` transform reverses the frames of the encoded log-mels (and the mask): close to encoding
    the reversed waveform (frames can sit up to one hop apart), and far from the clip itself."""
    from multidiff.modalities.audio.anomalies import time_reversed

    m = AudioModality({"padding": "mask", "clip_seconds": 1.5})
    items, _ = m.read(synth)
    m.prepare(items)
    enc = m.encode(items[:4])
    backwards = m.encode([{**it, "wave": torch.from_numpy(time_reversed(it["wave"]))} for it in items[:4]])
    flipped = m.contrast(enc)
    assert torch.equal(flipped.x0, enc.x0.flip(-1)) and torch.equal(flipped.cond["label"], enc.cond["label"])
    assert (flipped.mask != backwards.mask).sum() <= 2 * len(items[:4])  # at most a frame at each end
    near = (flipped.x0 - backwards.x0).abs().mean()
    far = (enc.x0 - backwards.x0).abs().mean()
    assert near < 0.05 * far, (float(near), float(far))
