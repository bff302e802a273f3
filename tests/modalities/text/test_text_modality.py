"""TextModality: layouts, encode/decode, sampling shapes, persistence, registry, and overfitting."""

import math
import time

import pytest
import torch

from multidiff.core.draws import Draws
from multidiff.errors import ConfigError, DataError
from multidiff.modalities import get
from multidiff.modalities.text import TextModality, synthetic_corpus
from multidiff.modalities.text.corpus import parse_mr
from multidiff.modalities.text.metrics import rouge_l
from multidiff.modalities.text.modality import nearest_ids

LINES = synthetic_corpus(num_mrs=20, refs_per_mr=2, seed=0)


def test_registered():
    assert get("text") is TextModality


def test_unconditional_encode_decode_round_trip():
    m = TextModality()
    m.prepare(LINES)
    enc = m.encode(LINES[:4])
    assert enc.x0.dtype == torch.long and enc.known is None
    assert enc.mask.sum(1).tolist() == [len(m.tokenizer.encode(l.split("||")[1])) for l in LINES[:4]]
    assert m.decode(enc.x0, enc) == [l.split("||")[1].lower() for l in LINES[:4]]
    assert m.units() == ("token", 0)
    assert m.num_units(enc).tolist() == (enc.mask.sum(1) + 1).tolist()


def test_pad_mode_and_data2text_layout():
    m = TextModality(task="data2text", length_mode="pad", max_len=40, max_source_len=30)
    m.prepare(LINES)
    enc = m.encode(LINES[:3])
    tok = m.tokenizer
    for i, line in enumerate(LINES[:3]):
        mr, sent = line.split("||")
        src = tok.encode(mr)[:30]
        row = enc.x0[i]
        assert enc.known[i].sum() == len(src) + 1                 # source + SEP are context
        assert row[:len(src)].tolist() == src and int(row[len(src)]) == tok.sep_id
        tgt = row[len(src) + 1:len(src) + 1 + 40]
        assert int(tgt[len(tok.encode(sent))]) == tok.eos_id        # EOS then PAD
    assert m.decode(enc.x0, enc) == [l.split("||")[1].lower() for l in LINES[:3]]
    with pytest.raises(DataError):
        m.encode(["plain sentence without a meaning representation"])


def test_sample_shape_lengths_and_sources():
    m = TextModality()
    m.prepare(LINES)
    m.denoiser_net(dict(embed_dim=8, hidden=16, layers=1, heads=2))
    shape, enc = m.sample_shape(3, length=[4, 6, 5])
    assert shape == (3, 6, 8) and enc.mask.sum(1).tolist() == [4, 6, 5]
    g = torch.Generator().manual_seed(0)
    _, enc = m.sample_shape(50, generator=g)                          # lengths from the training set
    seen = {i for i, c in enumerate(m.length_counts) if c}
    assert set(enc.mask.sum(1).tolist()) <= seen
    d2t = TextModality(task="data2text", length_mode="pad", max_len=30)
    d2t.prepare(LINES)
    with pytest.raises(ConfigError):
        d2t.sample_shape(2)
    shape, enc = d2t.sample_shape(2, source=[l.split("||")[0] for l in LINES[:2]])
    assert enc.known.sum(1).tolist() == [len(d2t.tokenizer.encode(l.split("||")[0])) + 1 for l in LINES[:2]]


@pytest.mark.parametrize("cond, match", [
    (dict(length=0), "from 1 to 64"), (dict(length=65), "from 1 to 64"), (dict(length="12"), "whole number"),
    (dict(length=[4, 5]), "one such number per sample"), (dict(lenght=12), r"\['lenght'\]"),
    (dict(length=5, template="the [MASK] ."), "not both")])
def test_sample_shape_refuses_bad_conditioning(cond, match):
    m = TextModality(max_len=64)
    m.prepare(LINES)
    m.denoiser_net(dict(embed_dim=8, hidden=16, layers=1, heads=2))
    with pytest.raises(ConfigError, match=match):
        m.sample_shape(3, **cond)
    assert m.sample_shape(3, length=64)[0][1] == 64                   # the largest length is accepted


def test_state_round_trip_and_config_errors(tmp_path):
    m = TextModality(max_len=32)
    m.prepare(LINES)
    m.save(tmp_path)
    again = TextModality.load(tmp_path)
    assert again.tokenizer.fingerprint == m.tokenizer.fingerprint
    assert again.config == m.config and again.length_counts == m.length_counts
    with pytest.raises(ConfigError):
        TextModality(objective="mystery")
    with pytest.raises(ConfigError):
        TextModality({"no_such_key": 1})
    with pytest.raises(ConfigError):
        m.denoiser_net(dict(embed_dim=8, hidden=18, heads=4))


def test_infilling_keeps_given_words():
    m = TextModality()
    m.prepare(LINES)
    torch.manual_seed(0)
    net = m.denoiser_net(dict(embed_dim=8, hidden=16, layers=1, heads=2))
    out = m.generate(net, 3, steps=4, seed=0, template="the [MASK] is a [MASK] .")
    assert all(o.split()[0] == "the" and o.split()[2:4] == ["is", "a"] and o.endswith(" .") for o in out)
    assert all(len(o.split()) == 6 for o in out)


def test_generation_reproducible_and_clamped():
    m = TextModality(clamp=True)
    m.prepare(LINES)
    torch.manual_seed(0)
    net = m.denoiser_net(dict(embed_dim=8, hidden=16, layers=1, heads=2))
    a = m.generate(net, 3, steps=4, seed=1)
    assert a == m.generate(net, 3, steps=4, seed=1)
    assert len(a) == 3 and all(isinstance(s, str) for s in a)
    sig = m.sigmas(net, 10)
    assert sig[-1] == 0 and bool((sig[1:] < sig[:-1]).all())


def test_sampler_noise_scale_eta_reaches_the_sampler():
    m = TextModality()
    m.prepare(LINES)
    torch.manual_seed(0)
    net = m.denoiser_net(dict(embed_dim=8, hidden=16, layers=1, heads=2))

    def run(method, **text):
        return m.generate(net, 3, steps=6, seed=4, method=method, return_ids=True,
                          diffusion_config={"text": text} if text else None)[1]
    # DPM-Solver++(2M) SDE without noise is DPM-Solver++(2M) (Lu et al. 2022): the same update, no draws
    assert torch.allclose(run("dpmpp_2m_sde", eta=0.0), run("dpmpp_2m"), atol=1e-5)
    assert not torch.allclose(run("dpmpp_2m_sde"), run("dpmpp_2m"), atol=1e-2)
    assert torch.equal(run("dpmpp_2m_sde", eta=1.0), run("dpmpp_2m_sde"))           # 1: the sampler's default
    assert torch.equal(run("ddim", eta=1.0), run("ddpm"))                           # DDIM(1) is DDPM
    with pytest.raises(ConfigError, match="'euler' has none"):
        run("euler", eta=2.0)
    with pytest.raises(ConfigError, match="ddpm"):          # DDPM fixes its noise (eta 1): no knob to turn
        run("ddpm", eta=0.5)
    with pytest.raises(ConfigError, match="eta must be >= 0"):
        run("dpmpp_2m_sde", eta=-1.0)


def _fit(m, net, enc, steps, lr=3e-3, bs=8):
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    for step in range(steps):
        loss = m.loss(net, enc, Draws.seeded(step, bs))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())


@pytest.mark.slow
def test_tiny_model_overfits_eight_sentences():
    sents = [l.split("||")[1].lower() for l in synthetic_corpus(num_mrs=8, refs_per_mr=1, seed=3)]
    m = TextModality(self_cond_prob=0.5)
    m.prepare(sents)
    torch.manual_seed(0)
    net = m.denoiser_net(dict(embed_dim=16, hidden=64, layers=2, heads=4, dropout=0.0))
    enc = m.encode(sents)
    t0 = time.time()
    _fit(m, net, enc, 800)
    out = m.generate(net, 8, steps=20, seed=0, method="euler_ancestral")
    hits = sum(o in sents for o in out)
    close = rouge_l(out, [sents] * len(out))
    assert hits >= 4 and close > 0.9, (out, time.time() - t0)
    # infilling: two words of a training sentence hidden; the kept words stay, the model fills the gaps
    words = sents[0].split()
    template = " ".join("[MASK]" if i in (2, 5) else w for i, w in enumerate(words))
    filled = m.generate(net, 4, steps=20, seed=0, template=template)
    assert all(f.split()[:2] == words[:2] and len(f.split()) == len(words) for f in filled)
    assert sum(f == sents[0] for f in filled) >= 2, filled
    # the bound on the training sentences fell far below log V per token
    t = m.nll_terms(net, enc, Draws.seeded(0, 8))
    assert float(t["total"].sum() / t["tokens"].sum()) < 1.0


def test_through_diffusion_model_trainer_and_folder(tmp_path):
    """The lead's DiffusionModel + Trainer drive the text hooks; the saved folder reloads and samples."""
    from multidiff.model import DiffusionModel, build_modality
    from multidiff.train.trainer import TrainConfig, Trainer
    m = build_modality("text", {"max_len": 48, "self_cond_prob": 0.5})
    m.prepare(LINES)
    model = DiffusionModel(m, {"embed_dim": 8, "hidden": 16, "layers": 1, "heads": 2})
    enc = m.encode(LINES)
    cfg = TrainConfig(max_steps=3, batch_size=8, lr=1e-3, quiet=True, checkpoint_every=3, log_every=1)
    Trainer(model, enc, cfg, tmp_path / "run").train()
    again = DiffusionModel.from_pretrained(tmp_path / "run")
    assert again.modality.tokenizer.fingerprint == m.tokenizer.fingerprint
    texts = again.sample(3, steps=3, seed=0, length=5)
    assert len(texts) == 3 and all(len(t.split()) <= 5 for t in texts)
    assert texts == again.sample(3, steps=3, seed=0, length=5)
    nll = again.nll(enc.index(slice(0, 4)))
    assert nll.shape == (4,) and bool(torch.isfinite(nll).all())
    assert float(nll.min()) > 0


def test_data2text_through_diffusion_model():
    from multidiff.model import DiffusionModel, build_modality
    m = build_modality("text", {"task": "data2text", "length_mode": "pad", "max_len": 40})
    m.prepare(LINES)
    model = DiffusionModel(m, {"embed_dim": 8, "hidden": 16, "layers": 1, "heads": 2})
    mrs = [l.split("||")[0] for l in LINES[:2]]
    texts = model.sample(2, steps=3, seed=0, source=mrs)
    # the known source is not part of the decoded output (an untrained net may still emit MR words by chance)
    assert len(texts) == 2 and not any(mr.strip().lower() in t for mr in mrs for t in texts)
    loss = model(m.encode(LINES[:4]), Draws.seeded(0, 4))
    assert torch.isfinite(loss)


def test_sampling_temperature_sharpens_the_token_posterior():
    from multidiff.modalities.text import objectives as obj
    m = TextModality()
    m.prepare(LINES)
    torch.manual_seed(0)
    net = m.denoiser_net(dict(embed_dim=8, hidden=16, layers=1, heads=2)).eval()
    x, sig = torch.randn(2, 5, 8), torch.full((2,), 0.7)
    E = net.embedding_matrix()
    lg = obj.logits(net, x, sig, self_cond=torch.zeros_like(x))
    lg[..., [0, 1, 2, 4, 5]] = -math.inf   # PAD BOS EOS SEP MASK never stand in a 'given'-mode target (UNK may)
    cfg = {"text": {"temperature": 0.5}}
    assert torch.allclose(m.make_denoiser(net, cfg)(x, sig), torch.softmax(2 * lg, -1) @ E, atol=1e-5)
    assert torch.allclose(m.make_denoiser(net)(x, sig), torch.softmax(lg, -1) @ E, atol=1e-5)
    cold = m.make_denoiser(net, {"text": {"temperature": 1e-4}})(x, sig)      # limit: the argmax embedding
    assert torch.allclose(cold, E[lg.argmax(-1)], atol=1e-4)
    with pytest.raises(ConfigError, match="temperature"):
        m.make_denoiser(net, {"text": {"temperature": 0.0}})


def test_timed_generate_times_the_denoiser_calls_of_the_run():
    from multidiff.modalities.text.evaluate import timed_generate
    m = TextModality()
    m.prepare(LINES)
    torch.manual_seed(0)
    net = m.denoiser_net(dict(embed_dim=8, hidden=16, layers=1, heads=2))
    calls = []

    def counting(D):
        def call(x, sigma, **cond):
            calls.append(x.shape[0])
            return D(x, sigma, **cond)
        return call

    texts, speed = timed_generate(m, net, 5, steps=4, batch_size=3, seed=2)
    # the timing proxy leaves the samples unchanged: same texts as plain generation, batch by batch
    assert texts == m.generate(net, 3, steps=4, seed=2) + m.generate(net, 2, steps=4, seed=3, denoiser_hook=counting)
    assert calls == [2] * 4                                      # one denoiser call per Euler step
    assert 0 < speed["denoiser_seconds"] <= speed["sampler_seconds"]
    assert speed["sampler_overhead"] == pytest.approx(speed["sampler_seconds"] / speed["denoiser_seconds"])


def test_data2text_given_lengths_follow_the_sources_slot_count(tmp_path):
    m = TextModality(task="data2text", length_mode="given", max_len=64, max_source_len=40)
    m.prepare(LINES)
    seen: dict[int, set[int]] = {}                  # slot count -> target lengths in the training lines
    for line in LINES:
        mr, sent = line.split("||")
        seen.setdefault(mr.count("|") + 1, set()).add(len(m.tokenizer.encode(sent)))
    for k in sorted(seen):
        src = next(l.split("||")[0] for l in LINES if l.split("||")[0].count("|") + 1 == k)
        _, ctx = m.sample_shape(30, source=[src] * 30, seed=k)
        known = ctx.known.bool() if ctx.known.dim() == 2 else ctx.known[..., 0].bool()
        lens = (ctx.cond["attention_mask"].bool() & ~known).sum(1)
        assert set(lens.tolist()) <= seen[k], k
    m.save(tmp_path / "mod")
    assert TextModality.load(tmp_path / "mod").length_counts_by_slots == m.length_counts_by_slots


def test_data2text_target_first_layout():
    m = TextModality(task="data2text", length_mode="given", max_len=40, max_source_len=30, source_first=False)
    m.prepare(LINES)
    tok = m.tokenizer
    enc = m.encode(LINES[:3])
    for i, line in enumerate(LINES[:3]):
        mr, sent = line.split("||")
        src, tgt = tok.encode(mr)[:30], tok.encode(sent)[:40]
        n = len(tgt)
        assert enc.x0[i, :n].tolist() == tgt                       # the target starts at position 0
        assert int(enc.x0[i, n]) == tok.sep_id and enc.x0[i, n + 1:n + 1 + len(src)].tolist() == src
        assert enc.known[i].tolist()[:n + 1 + len(src)] == [False] * n + [True] * (len(src) + 1)
    assert m.decode(enc.x0, enc) == [l.split("||")[1].lower() for l in LINES[:3]]
    shape, ctx = m.sample_shape(2, source=[l.split("||")[0] for l in LINES[:2]], length=[5, 7], seed=0)
    known = ctx.known if ctx.known.dim() == 2 else ctx.known[..., 0]
    assert (~known[0, :5]).all() and known[0, 5] and (~known[1, :7]).all() and known[1, 7]
    torch.manual_seed(0)
    net = m.denoiser_net(dict(embed_dim=8, hidden=16, layers=1, heads=2))
    _, x, ctx = m.generate(net, 2, steps=3, source=[l.split("||")[0] for l in LINES[:2]], length=[5, 7], seed=0,
                           return_ids=True)
    src0 = tok.encode(LINES[0].split("||")[0])[:30]
    assert torch.allclose(x[0, 6:6 + len(src0)], net.embed(torch.tensor(src0)))  # the source kept after SEP


def test_data2text_delexicalised_names_are_placeholders_in_training_and_copied_back_when_sampling(tmp_path):
    from multidiff.modalities.text.corpus import delexicalise, parse_examples
    slots = ["name", "near"]
    m = TextModality(task="data2text", length_mode="given", max_len=40, max_source_len=30, delexicalise=slots)
    m.prepare(LINES)
    vocab = m.tokenizer.tok.get_vocab()
    one_word_names = {l.split("||")[0].split(" | ")[0][7:].lower() for l in LINES} - {"the"}
    one_word_names = {n for n in one_word_names if " " not in n}
    assert one_word_names and {"name_value", "near_value"} <= set(vocab)
    assert not one_word_names & set(vocab)                             # names are never tokenised
    # training rows equal a plain model's rows of the hand-delexicalised lines (same tokenizer)
    plain = TextModality(task="data2text", length_mode="given", max_len=40, max_source_len=30)
    plain.tokenizer = m.tokenizer
    hand = [delexicalise(e, slots) for e in parse_examples(LINES[:6])]
    assert any("name_value" in e.text for e in hand)
    assert torch.equal(m.encode(LINES[:6]).x0, plain.encode(hand).x0)
    # sampling: the source is delexicalised, and the MR's own values replace the placeholders in the output
    mr = "name : Fitzbillies | area : riverside | near : Clare Hall"
    written = m.tokenizer.encode("name_value is near near_value .")       # what a trained model writes
    _, ctx = m.sample_shape(1, source=[mr], length=len(written), seed=0)
    known = ctx.known[0].bool() if ctx.known.dim() == 2 else ctx.known[0, :, 0].bool()
    src_ids = set(ctx.x0[0][known].tolist())
    assert {vocab["name_value"], vocab["near_value"]} <= src_ids and not src_ids & {vocab.get("clare"), vocab.get("hall")}
    ids = ctx.x0.clone()
    ids[0, ~known] = torch.tensor(written)
    assert m.decode(ids, ctx) == ["Fitzbillies is near Clare Hall ."]
    # generate and DiffusionModel.sample (the CLI's path) run the same sampler and decoding
    from multidiff.model import DiffusionConfig, DiffusionModel
    model = DiffusionModel(m, dict(embed_dim=8, hidden=16, layers=1, heads=2), DiffusionConfig(sampler="euler"))
    mrs = [mr, "name : Alimentum | near : Yippee Noodle Bar"]
    assert model.sample(2, steps=3, seed=1, source=mrs, length=5) == m.generate(model.net, 2, steps=3, seed=1,
                                                                                 source=mrs, length=5)
    m.save(tmp_path / "mod")
    assert TextModality.load(tmp_path / "mod").config.delexicalise == slots


def test_delexicalise_needs_a_list_of_slots_and_the_data2text_task():
    with pytest.raises(ConfigError, match="delexicalise"):
        TextModality(task="unconditional", delexicalise=["name"])
    with pytest.raises(ConfigError, match="delexicalise"):
        TextModality(task="data2text", delexicalise="name")



def test_data2text_length_quantile_replaces_the_draw_by_a_quantile_of_the_training_lengths():
    # two-slot training sentences of 3 (once), 5 (twice) and 7 words (once)
    lines = ["name : A | food : Thai||a b c", "name : B | food : Thai||a b c d e",
             "name : C | area : riverside||a b c d e", "name : D | near : Ranch||a b c d e f g"]
    m = TextModality(task="data2text", length_mode="given", max_len=16, max_source_len=12)
    m.prepare(lines)

    def target_lengths(ctx):
        known = ctx.known.bool() if ctx.known.dim() == 2 else ctx.known[..., 0].bool()
        return set((ctx.cond["attention_mask"].bool() & ~known).sum(1).tolist())

    src = ["name : X | food : Thai"] * 20
    assert target_lengths(m.sample_shape(20, source=src, seed=0)[1]) == {3, 5, 7}          # drawn
    for q, n in [(0.25, 3), (0.5, 5), (0.75, 5), (0.8, 7), (1.0, 7)]:
        assert target_lengths(m.sample_shape(20, source=src, length_quantile=q)[1]) == {n}, q
    # per call through generate's sampling settings
    net = m.denoiser_net(dict(embed_dim=8, hidden=16, layers=1, heads=2))
    _, _, ctx = m.generate(net, 3, steps=2, source=src[:3], return_ids=True,
                           diffusion_config={"text": {"length_quantile": 0.8}})
    assert target_lengths(ctx) == {7}
    with pytest.raises(ConfigError, match="length_quantile"):
        TextModality(task="data2text", length_quantile=1.5)
    with pytest.raises(ConfigError, match="length_quantile"):
        TextModality(length_quantile=0.5)                          # unconditional: lengths are given or drawn


def test_sampled_embeddings_never_decode_to_tokens_that_cannot_stand_in_a_target():
    """'given' mode: PAD, BOS, EOS, SEP and MASK are never decoded (a special would shorten the text below the
    length asked for); 'pad' mode decodes EOS and PAD, which end a text there."""
    for mode in ("given", "pad"):
        m = TextModality(length_mode=mode)
        m.prepare(LINES)
        tok = m.tokenizer
        net = m.denoiser_net(dict(embed_dim=8, hidden=16, layers=1, heads=2))
        E = net.embedding_matrix().detach()
        word = 6                                                    # the first ordinary token
        ids = torch.tensor([[word, tok.eos_id, tok.pad_id, tok.sep_id, tok.mask_id, tok.bos_id, word]])
        _, ctx = m.sample_shape(1, length=7) if mode == "given" else (None, None)
        out = m.decode(E[ids], ctx, net=net)[0].split()
        if mode == "given":
            assert len(out) == 7 and out[0] == out[-1] == tok.id_to_token(word)
        else:
            assert out == [tok.id_to_token(word)]                   # the text ends at the EOS
        # clamping never lands on them either (the readout's mass: test_sampling_temperature_...)
        banned = m.banned_ids()
        assert banned == ([0, 1, 2, 4, 5] if mode == "given" else [1, 4, 5])
        clamp = m.project(net, {"text": {"clamp": True}})
        assert not set(nearest_ids(clamp(E[ids]), E).flatten().tolist()) & set(banned)


def test_sample_shape_length_quantile_defaults_to_the_config_and_takes_a_string():
    m = TextModality(task="data2text", length_mode="given", max_len=40, max_source_len=30, length_quantile=1.0)
    m.prepare(LINES)
    mr = [LINES[0].split("||")[0]]
    longest = max(n for n, c in enumerate(m.length_counts_by_slots[str(len(parse_mr(mr[0])))]) if c)
    drawn = {int(m.sample_shape(1, source=mr, seed=s)[1].mask.sum()) for s in range(5)}
    assert drawn == {longest + 1 + len(m.tokenizer.encode(mr[0]))}            # SEP + source + the longest length
    assert m.sample_shape(1, source=mr, length_quantile="1.0")[1].mask.sum() == min(drawn)
    with pytest.raises(ConfigError, match="length_quantile"):
        m.sample_shape(1, source=mr, length_quantile="half")
    u = TextModality()
    u.prepare(LINES)
    with pytest.raises(ConfigError, match="unconditional"):
        u.sample_shape(1, source=mr)
    with pytest.raises(ConfigError, match="needs a data-to-text model"):
        u.sample_shape(1, length_quantile=0.5)
