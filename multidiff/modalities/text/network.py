"""The text denoiser network: a `transformers` encoder fed `inputs_embeds`, with a tied readout.

    ids -> E (learned table [V, d], normalised 'none' | 'unit' | 'sqrt_d') -> x0      (the diffused space)
    x_in [B, L, d] (+ self-conditioning x0_hat [B, L, d]) -> Linear up to hidden
      + noise-level embedding (sinusoidal features of c_noise -> MLP) + known-position embedding
      (+ optional end-position embedding: each position's distance to its row's last real position)
    -> BertModel (built from a BertConfig, or a local pretrained encoder folder), with AdaLN-style
       per-layer modulation h * (1 + scale_l(t)) + shift_l(t) (zero-initialised) at each layer input
    -> Linear down to d -> logits = scale * (h_d @ E^T) + bias                    [B, L, V]

`c_noise` is the logSNR of each example [B] (or of each position [B, L]; known positions get a large
logSNR). The preconditioning (x_in = x / sqrt(sigma^2 + sigma_data^2)) and the output prior live in
`objectives.logits`, so that every loss, the bound and the sampler share them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError

NORMS = ("none", "unit", "sqrt_d")


class NoiseEmbedding(nn.Module):
    """logSNR -> [.., dim]: sinusoidal features (periods ~1.5 to ~125 logSNR units) and a 2-layer MLP."""

    def __init__(self, dim: int, n_freq: int = 32):
        super().__init__()
        self.register_buffer("freqs", torch.exp(torch.linspace(math.log(0.05), math.log(4.0), n_freq)),
                             persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * n_freq + 1, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        a = c.float().unsqueeze(-1) * self.freqs
        return self.mlp(torch.cat([a.sin(), a.cos(), c.float().unsqueeze(-1) / 10.0], dim=-1))


class TextDenoiserNet(nn.Module):
    """Embedding table + encoder + tied readout.

    Args:
        vocab_size: V. embed_dim: d (16-128). norm: 'none' | 'unit' (rows of norm 1, Plaid) | 'sqrt_d'
        (rows of norm sqrt(d), CDCD). hidden, layers, heads, intermediate, dropout: the BertConfig
        (dropout on the attention weights and the residual branches). input_dropout: dropout on the
        encoder's input (BERT's embedding dropout; default 0: it would erase coordinates of the noisy
        input that the network is asked to denoise).
        max_len: longest sequence (position embeddings). self_cond: accept a previous x0_hat.
        adaln: per-layer noise-level modulation. end_positions: add a learned embedding of each
        position's distance to the last real position of its row (attention mask): in an unconditional
        row every position then knows the length n directly, not only through attention (a data-to-text
        row's end is that of its MR). embed_init_std: N(0, std) init of the table
        (default 1 for norm 'none', 0.1 otherwise: with a normalised table the raw rows' scale sets how
        fast Adam turns them, so small rows learn faster).
        pretrained: a local folder with a Hugging Face encoder (config.json + weights) to use instead
        of a BertConfig; its hidden size replaces `hidden`.
    """

    def __init__(self, vocab_size: int, embed_dim: int = 32, hidden: int = 128, layers: int = 4,
                 heads: int = 4, intermediate: int | None = None, dropout: float = 0.1, max_len: int = 128,
                 norm: str = "unit", self_cond: bool = True, adaln: bool = True, end_positions: bool = False,
                 input_dropout: float = 0.0, embed_init_std: float | None = None, pretrained: str | None = None):
        super().__init__()
        if norm not in NORMS:
            raise ConfigError(f"embedding norm must be one of {NORMS}, not {norm!r}")
        if not 1 <= embed_dim <= 4096:
            raise ConfigError(f"embed_dim must be positive, not {embed_dim}")
        if not 0.0 <= input_dropout < 1.0:
            raise ConfigError(f"input_dropout must be in [0, 1), not {input_dropout}")
        self.vocab_size, self.embed_dim, self.norm, self.max_len = vocab_size, embed_dim, norm, max_len
        self.use_self_cond = self_cond
        self.table = nn.Embedding(vocab_size, embed_dim)
        if embed_init_std is None:  # small rows move fast under Adam once normalised (CDCD: init matters)
            embed_init_std = 1.0 if norm == "none" else 0.1
        nn.init.normal_(self.table.weight, std=embed_init_std)
        self.encoder = _build_encoder(hidden, layers, heads, intermediate, dropout, max_len, pretrained)
        embeddings = getattr(self.encoder, "embeddings", None)
        if isinstance(getattr(embeddings, "dropout", None), nn.Dropout):
            embeddings.dropout.p = input_dropout
        hidden = self.encoder.config.hidden_size
        self.hidden = hidden
        self.in_proj = nn.Linear(embed_dim * (2 if self_cond else 1), hidden)
        self.noise_emb = NoiseEmbedding(hidden)
        self.known_emb = nn.Parameter(torch.zeros(hidden))
        self.end_emb = nn.Embedding(max_len, hidden) if end_positions else None
        if self.end_emb is not None:
            nn.init.zeros_(self.end_emb.weight)       # starts as the network without it
        self.out_norm = nn.LayerNorm(hidden)
        self.out_proj = nn.Linear(hidden, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(max(1.0, math.sqrt(embed_dim)))))
        self.out_bias = nn.Parameter(torch.zeros(vocab_size))
        self._mod: torch.Tensor | None = None
        self.adaln = None
        layer_list = getattr(getattr(self.encoder, "encoder", None), "layer", None)
        if adaln and layer_list is not None:
            self.adaln = nn.ModuleList(nn.Linear(hidden, 2 * hidden) for _ in layer_list)
            for lin in self.adaln:
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)
            for i, layer in enumerate(layer_list):
                layer.adaln_index = i
                # a bound method, not a closure: copy.deepcopy rebinds it to the copied network
                layer.register_forward_pre_hook(self._adaln_hook, with_kwargs=True)

    # --- the embedding space -----------------------------------------------------------------------
    def embedding_matrix(self) -> torch.Tensor:
        """The normalised table E [V, d]: the points x0 lives on."""
        w = self.table.weight
        if self.norm == "none":
            return w
        w = F.normalize(w, dim=-1)
        return w * math.sqrt(self.embed_dim) if self.norm == "sqrt_d" else w

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, L] -> x0 [B, L, d]."""
        return F.embedding(ids, self.embedding_matrix())

    def sigma_data(self) -> torch.Tensor:
        """Per-coordinate RMS of the embeddings (a 0-dim tensor, no gradient)."""
        if self.norm == "unit":
            return torch.tensor(1.0 / math.sqrt(self.embed_dim))
        if self.norm == "sqrt_d":
            return torch.tensor(1.0)
        return self.table.weight.detach().pow(2).mean().sqrt().clamp_min(1e-4)

    # --- the network --------------------------------------------------------------------------------
    def _adaln_hook(self, layer: nn.Module, args: tuple, kwargs: dict):
        """Forward pre-hook of encoder layer `layer.adaln_index`: h -> h * (1 + scale) + shift."""
        if self._mod is None:
            return None
        shift, scale = self.adaln[layer.adaln_index](self._mod).chunk(2, dim=-1)
        if args:
            h = args[0]
            return (h * (1 + scale) + shift, *args[1:]), kwargs
        h = kwargs["hidden_states"]
        kwargs = dict(kwargs, hidden_states=h * (1 + scale) + shift)
        return args, kwargs

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, self_cond: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, known: torch.Tensor | None = None) -> torch.Tensor:
        """x_in [B, L, d] (preconditioned), c_noise [B] or [B, L] (logSNR), self_cond [B, L, d] (previous
        x0_hat in embedding space, or None), attention_mask [B, L] (1 = real position), known [B, L]
        bool (context positions) -> logits [B, L, V]."""
        B, L, _ = x_in.shape
        if self.use_self_cond:
            sc = torch.zeros_like(x_in) if self_cond is None else self_cond / self.sigma_data().to(x_in)
            x_in = torch.cat([x_in, sc], dim=-1)
        h = self.in_proj(x_in)
        c = c_noise if c_noise.dim() == 2 else c_noise[:, None].expand(B, L)
        t = self.noise_emb(c)                                   # [B, L, H]
        h = h + t
        if known is not None:
            h = h + known.unsqueeze(-1).to(h.dtype) * self.known_emb
        if self.end_emb is not None:
            h = h + self.end_emb(positions_from_end(attention_mask, B, L, x_in.device))
        self._mod = t if self.adaln is not None else None
        try:
            am = None if attention_mask is None else attention_mask.to(torch.long)
            out = self.encoder(inputs_embeds=h, attention_mask=am)
        finally:
            self._mod = None
        h = out[0] if isinstance(out, (tuple, list)) else out.last_hidden_state
        h = self.out_proj(self.out_norm(h))
        return self.logit_scale.exp() * (h @ self.embedding_matrix().t()) + self.out_bias

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def positions_from_end(attention_mask: torch.Tensor | None, B: int, L: int, device) -> torch.Tensor:
    """[B, L] long: n_b - 1 - i for the n_b real positions of row b (attention_mask [B, L], 1 = real;
    None = all L real), 0 on padding."""
    i = torch.arange(L, device=device).expand(B, L)
    n = torch.full((B, 1), L, device=device) if attention_mask is None else \
        attention_mask.to(device=device, dtype=torch.long).sum(1, keepdim=True)
    return (n - 1 - i).clamp_min(0)


def _build_encoder(hidden: int, layers: int, heads: int, intermediate: int | None, dropout: float,
                   max_len: int, pretrained: str | None) -> nn.Module:
    if pretrained:
        from pathlib import Path

        from transformers import AutoModel
        if not (Path(pretrained) / "config.json").is_file():
            raise ConfigError(f"pretrained encoder folder {pretrained} has no config.json; give a local "
                              "Hugging Face model folder (nothing is downloaded)")
        return AutoModel.from_pretrained(pretrained, local_files_only=True)
    from transformers import BertConfig, BertModel
    if hidden % heads:
        raise ConfigError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
    cfg = BertConfig(vocab_size=1, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=intermediate or 4 * hidden, hidden_dropout_prob=dropout,
                     attention_probs_dropout_prob=dropout, max_position_embeddings=max_len,
                     type_vocab_size=1, pad_token_id=0)
    return BertModel(cfg, add_pooling_layer=False)


def build_net(vocab_size: int, cfg: dict[str, Any]) -> TextDenoiserNet:
    """`TextDenoiserNet` from a dict of its keyword arguments (unknown keys -> ConfigError)."""
    import inspect
    allowed = set(inspect.signature(TextDenoiserNet.__init__).parameters) - {"self", "vocab_size"}
    bad = set(cfg) - allowed
    if bad:
        raise ConfigError(f"unknown text network settings {sorted(bad)}; allowed: {sorted(allowed)}")
    return TextDenoiserNet(vocab_size, **cfg)
