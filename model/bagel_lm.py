"""BAGEL's language model: Qwen2 as a Mixture of Transformers, with BAGEL's parameter names.

Every token goes through one of two experts with the same shapes: the understanding expert (text and
ViT tokens; Qwen2's own names) or the generation expert (noised and clean latent tokens; the same names
with ``_moe_gen``). Per layer: RMSNorm, QKV projections (biased), per-head RMSNorm of queries and keys
(QK-norm), rotary position embedding (Qwen2's, half-split), attention over the whole packed sample under
the generalised causal mask, output projection, RMSNorm and SwiGLU MLP, each by the token's expert; a
final RMSNorm per expert. Keys in a state dict are those of BAGEL's ``language_model.*``.

The generalised causal mask of one sample, from its splits (``causal``, ``full`` or ``noise``): a token
sees earlier tokens and the whole of its own ``full``/``noise`` split, and nothing sees a ``noise`` split
from outside it. Computation is in the weights' dtype; attention goes through PyTorch's SDPA per sample.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class BagelLMConfig:
    """The fields of BAGEL's ``llm_config.json`` (a Qwen2 configuration) that shape the model."""

    vocab_size: int = 152064
    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int = 4
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    hidden_act: str = "silu"

    @classmethod
    def from_json(cls, doc: dict) -> BagelLMConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


class RMSNorm(nn.Module):
    """Qwen2's RMSNorm: normalise in float32, scale in the input's dtype."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


class SwiGLU(nn.Module):
    def __init__(self, cfg: BagelLMConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def routed(x, gen, und_fn, gen_fn, width: int | None = None):
    """Rows of ``x`` where ``gen`` is False through ``und_fn``, the others through ``gen_fn`` (in the dtype the
    experts give, which under autocast is not the input's)."""
    und_idx, gen_idx = (~gen).nonzero().squeeze(1), gen.nonzero().squeeze(1)
    a = und_fn(x[und_idx]) if und_idx.numel() else None
    b = gen_fn(x[gen_idx]) if gen_idx.numel() else None
    first = a if a is not None else b
    if first is None:
        return x.new_zeros((x.shape[0], width or x.shape[1]))
    out = first.new_zeros((x.shape[0], first.shape[1]))
    if a is not None:
        out[und_idx] = a
    if b is not None:
        out[gen_idx] = b.to(out.dtype)
    return out


def rotary(positions, head_dim: int, theta: float, dtype):
    """(cos, sin), each (N, head_dim), of Qwen2's rotary embedding at integer positions."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float().to(positions.device)
                                / head_dim))
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos[:, None, :] + rotated * sin[:, None, :]


def sample_mask(split_lens: list[int], modes: list[str], device=None):
    """The generalised causal mask of one sample: (L, L) bool, True where a query may attend to a key."""
    split_id, noise_id = [], []
    for i, (n, mode) in enumerate(zip(split_lens, modes)):
        if mode not in ("causal", "full", "noise"):
            raise ValueError(f"unknown attention mode {mode!r}; expected causal, full or noise")
        split_id += [i if mode in ("full", "noise") else -1] * n
        noise_id += [i if mode == "noise" else -1] * n
    full = torch.tensor(split_id, device=device)
    noise = torch.tensor(noise_id, device=device)
    n = full.numel()
    idx = torch.arange(n, device=device)
    causal = idx[:, None] >= idx[None, :]
    same_full = (full[:, None] == full[None, :]) & (full[:, None] >= 0)
    hidden_noise = (noise[None, :] >= 0) & (noise[:, None] != noise[None, :])
    return (causal | same_full) & ~hidden_noise


class MoTAttention(nn.Module):
    def __init__(self, cfg: BagelLMConfig):
        super().__init__()
        d, hd, h, kv = cfg.hidden_size, cfg.head_dim, cfg.num_attention_heads, cfg.num_key_value_heads
        self.heads, self.kv_heads, self.head_dim = h, kv, hd
        for suffix in ("", "_moe_gen"):
            setattr(self, f"q_proj{suffix}", nn.Linear(d, h * hd, bias=True))
            setattr(self, f"k_proj{suffix}", nn.Linear(d, kv * hd, bias=True))
            setattr(self, f"v_proj{suffix}", nn.Linear(d, kv * hd, bias=True))
            setattr(self, f"o_proj{suffix}", nn.Linear(h * hd, d, bias=False))
            setattr(self, f"q_norm{suffix}", RMSNorm(hd, cfg.rms_norm_eps))
            setattr(self, f"k_norm{suffix}", RMSNorm(hd, cfg.rms_norm_eps))

    def forward(self, x, gen, cos, sin, sample_lens: list[int], masks: list):
        hd, h, kv = self.head_dim, self.heads, self.kv_heads
        q = routed(x, gen, self.q_proj, self.q_proj_moe_gen, h * hd).view(-1, h, hd)
        k = routed(x, gen, self.k_proj, self.k_proj_moe_gen, kv * hd).view(-1, kv, hd)
        v = routed(x, gen, self.v_proj, self.v_proj_moe_gen, kv * hd).view(-1, kv, hd)
        q = routed(q.flatten(1), gen, lambda t: self.q_norm(t.view(-1, h, hd)).flatten(1),
                   lambda t: self.q_norm_moe_gen(t.view(-1, h, hd)).flatten(1)).view(-1, h, hd)
        k = routed(k.flatten(1), gen, lambda t: self.k_norm(t.view(-1, kv, hd)).flatten(1),
                   lambda t: self.k_norm_moe_gen(t.view(-1, kv, hd)).flatten(1)).view(-1, kv, hd)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        k = k.repeat_interleave(h // kv, dim=1)
        v = v.repeat_interleave(h // kv, dim=1)
        outs = []
        for qs, ks, vs, mask in zip(q.split(sample_lens), k.split(sample_lens), v.split(sample_lens), masks):
            o = F.scaled_dot_product_attention(qs.transpose(0, 1)[None], ks.transpose(0, 1)[None],
                                               vs.transpose(0, 1)[None], attn_mask=mask[None, None])
            outs.append(o[0].transpose(0, 1))
        o = torch.cat(outs).reshape(-1, h * hd)
        return routed(o, gen, self.o_proj, self.o_proj_moe_gen, x.shape[1])


class MoTLayer(nn.Module):
    def __init__(self, cfg: BagelLMConfig):
        super().__init__()
        self.self_attn = MoTAttention(cfg)
        self.mlp, self.mlp_moe_gen = SwiGLU(cfg), SwiGLU(cfg)
        for name in ("input_layernorm", "post_attention_layernorm"):
            setattr(self, name, RMSNorm(cfg.hidden_size, cfg.rms_norm_eps))
            setattr(self, f"{name}_moe_gen", RMSNorm(cfg.hidden_size, cfg.rms_norm_eps))

    def forward(self, x, gen, cos, sin, sample_lens, masks):
        h = routed(x, gen, self.input_layernorm, self.input_layernorm_moe_gen)
        x = x + self.self_attn(h, gen, cos, sin, sample_lens, masks)
        return x + routed(x, gen, lambda t: self.mlp(self.post_attention_layernorm(t)),
                          lambda t: self.mlp_moe_gen(self.post_attention_layernorm_moe_gen(t)))


class Qwen2MoTBody(nn.Module):
    def __init__(self, cfg: BagelLMConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(MoTLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.norm_moe_gen = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class BagelLanguageModel(nn.Module):
    """``language_model`` of a BAGEL checkpoint: ``model.*`` (the MoT body) and ``lm_head``."""

    def __init__(self, cfg: BagelLMConfig):
        super().__init__()
        self.cfg = cfg
        self.model = Qwen2MoTBody(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    def forward(self, x, positions, gen, sample_lens: list[int], masks: list):
        """Final hidden states (N, D) of a packed sequence ``x`` (N, D): ``positions`` (N,) rotary positions,
        ``gen`` (N,) True for generation-expert tokens, one (L, L) bool mask per sample of ``sample_lens``."""
        cos, sin = rotary(positions, self.cfg.head_dim, self.cfg.rope_theta, x.dtype)
        for layer in self.model.layers:
            x = layer(x, gen, cos, sin, sample_lens, masks)
        return routed(x, gen, self.model.norm, self.model.norm_moe_gen)
