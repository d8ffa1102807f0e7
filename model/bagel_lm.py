"""BAGEL's language model: Qwen2 as a Mixture of Transformers, with BAGEL's parameter names.

Every token goes through one of two experts with the same shapes: the understanding expert (text and
ViT tokens; Qwen2's own names) or the generation expert (noised and clean latent tokens; the same names
with ``_moe_gen``). Per layer: RMSNorm, QKV projections (biased), per-head RMSNorm of queries and keys
(QK-norm), rotary position embedding (Qwen2's, half-split), attention over the whole packed sample under
the generalised causal mask, output projection, RMSNorm and SwiGLU MLP, each by the token's expert; a
final RMSNorm per expert. Keys in a state dict are those of BAGEL's ``language_model.*``.

The generalised causal mask of one sample, from its splits (``causal``, ``full`` or ``noise``): a token
sees earlier tokens and the whole of its own ``full``/``noise`` split, and nothing sees a ``noise`` split
from outside it. Computation is in the weights' dtype; attention goes through PyTorch's SDPA per sample, either
under a dense (L, L) mask or split by split (``SampleSplits``: each split's queries against the keys they may
see, no mask built, only allowed pairs computed). The
layers work on rows grouped by expert (``Experts``), so each expert's projections are one matrix product on a
contiguous slice; attention takes the original order back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel


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
        # PyTorch's rms_norm computes in float32 for half-precision inputs and rounds once (one fused kernel on
        # CUDA instead of five passes over the rows); under autocast it may return float32, hence the cast
        return self.weight * F.rms_norm(x, (x.shape[-1],), eps=self.eps).to(x.dtype)


class SwiGLU(nn.Module):
    def __init__(self, cfg: BagelLMConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


# SDPA without cuDNN's kernels: cuDNN builds a plan for every new shape, and packed samples bring new split lengths
# with every batch (on an H200 the planning made end-to-end scoring CPU-bound: half its time)
ATTENTION_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


class Experts:
    """The packed sequence's rows grouped by expert: understanding rows first, then generation rows, so that each
    expert's projections run on one contiguous slice. Attention needs the original order back (``ungroup``)."""

    def __init__(self, gen):
        und_idx, gen_idx = (~gen).nonzero().squeeze(1), gen.nonzero().squeeze(1)
        self.n_und = und_idx.numel()
        self.plain = gen_idx.numel() == 0  # text and ViT rows only: no regrouping
        self.order = torch.cat([und_idx, gen_idx])  # grouped row -> original row
        self.inverse = torch.empty_like(self.order)
        self.inverse[self.order] = torch.arange(self.order.numel(), device=gen.device)

    def group(self, x):
        return x if self.plain else x.index_select(0, self.order)

    def ungroup(self, x):
        return x if self.plain else x.index_select(0, self.inverse)

    def apply(self, x, und_fn, gen_fn):
        """Grouped rows through their experts (in the dtype the understanding expert gives: under autocast it is
        not the input's)."""
        n = self.n_und
        if n == x.shape[0]:
            return und_fn(x)
        if n == 0:
            return gen_fn(x)
        a = und_fn(x[:n])
        return torch.cat([a, gen_fn(x[n:]).to(a.dtype)])


def rope_inv_freq(head_dim: int, theta: float, device=None):
    """Qwen2's rotary frequencies (head_dim / 2,), float32."""
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float().to(device) / head_dim))


def rotary(positions, head_dim: int, theta: float, dtype, inv_freq=None):
    """(cos, sin), each (N, head_dim), of Qwen2's rotary embedding at integer positions."""
    if inv_freq is None:
        inv_freq = rope_inv_freq(head_dim, theta, positions.device)
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


@dataclass(frozen=True)
class SampleSplits:
    """One sample's splits (lengths and modes), the generalised causal mask in the form ``split_attention`` runs."""

    lens: tuple[int, ...]
    modes: tuple[str, ...]

    def plan(self, device) -> list[tuple]:
        """Per split, made once per forward for every layer: (query start, query end, the keys it may see (an end
        index, or the indices left when earlier noise splits are out of sight), the SDPA mask argument (None for
        a full or noise split, bottom-right causal for a causal one))."""
        from torch.nn.attention.bias import causal_lower_right

        out, start, hidden = [], 0, []
        for n, mode in zip(self.lens, self.modes):
            if mode not in ("causal", "full", "noise"):
                raise ValueError(f"unknown attention mode {mode!r}; expected causal, full or noise")
            end = start + n
            keys, at = end, 0
            if hidden:
                seen = []
                for a, b in [*hidden, (end, end)]:
                    if a > at:
                        seen.append(torch.arange(at, a, device=device))
                    at = b
                keys = torch.cat(seen)
            n_keys = keys if isinstance(keys, int) else keys.numel()
            out.append((start, end, keys, causal_lower_right(n, n_keys) if mode == "causal" else None))
            if mode == "noise":
                hidden.append((start, end))
            start = end
        return out


def split_attention(q, k, v, plan: list[tuple]):
    """Attention of one sample (1, H, L, Dh) under its generalised causal mask without building the mask
    (``SampleSplits.plan``): the queries of each split attend the keys they may see, which are the sample's keys
    up to the split's end less the earlier noise splits: all of them for a full or noise split, bottom-right
    causal for a causal split (so only allowed pairs are computed, and PyTorch can use its flash kernels, which
    take no mask)."""
    outs = []
    for start, end, keys, mask in plan:
        if isinstance(keys, int):
            ks, vs = k[:, :, :keys], v[:, :, :keys]
        else:
            ks, vs = k.index_select(2, keys), v.index_select(2, keys)
        outs.append(F.scaled_dot_product_attention(q[:, :, start:end], ks, vs, attn_mask=mask))
    return torch.cat(outs, dim=2)


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

    def forward(self, x, ex: Experts, cos, sin, sample_lens: list[int], masks: list):
        """Grouped rows ``x`` (N, D) -> grouped rows (N, D); attention per sample in the original order."""
        hd, h, kv = self.head_dim, self.heads, self.kv_heads
        q = ex.apply(x, self.q_proj, self.q_proj_moe_gen).view(-1, h, hd)
        k = ex.apply(x, self.k_proj, self.k_proj_moe_gen).view(-1, kv, hd)
        v = ex.apply(x, self.v_proj, self.v_proj_moe_gen).view(-1, kv, hd)
        q = ex.apply(q, self.q_norm, self.q_norm_moe_gen)
        k = ex.apply(k, self.k_norm, self.k_norm_moe_gen)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        q, k, v = ex.ungroup(q), ex.ungroup(k), ex.ungroup(v)
        k = k.repeat_interleave(h // kv, dim=1)
        v = v.repeat_interleave(h // kv, dim=1)
        outs = []
        for qs, ks, vs, mask in zip(q.split(sample_lens), k.split(sample_lens), v.split(sample_lens), masks):
            qs, ks, vs = qs.transpose(0, 1)[None], ks.transpose(0, 1)[None], vs.transpose(0, 1)[None]
            if isinstance(mask, torch.Tensor):
                o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask[None, None])
            else:
                o = split_attention(qs, ks, vs, mask)
            outs.append(o[0].transpose(0, 1))
        o = ex.group(torch.cat(outs).reshape(-1, h * hd))
        return ex.apply(o, self.o_proj, self.o_proj_moe_gen)


class MoTLayer(nn.Module):
    def __init__(self, cfg: BagelLMConfig):
        super().__init__()
        self.self_attn = MoTAttention(cfg)
        self.mlp, self.mlp_moe_gen = SwiGLU(cfg), SwiGLU(cfg)
        for name in ("input_layernorm", "post_attention_layernorm"):
            setattr(self, name, RMSNorm(cfg.hidden_size, cfg.rms_norm_eps))
            setattr(self, f"{name}_moe_gen", RMSNorm(cfg.hidden_size, cfg.rms_norm_eps))

    def forward(self, x, ex: Experts, cos, sin, sample_lens, masks):
        h = ex.apply(x, self.input_layernorm, self.input_layernorm_moe_gen)
        x = x + self.self_attn(h, ex, cos, sin, sample_lens, masks)
        return x + ex.apply(x, lambda t: self.mlp(self.post_attention_layernorm(t)),
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
        ``gen`` (N,) True for generation-expert tokens, one (L, L) bool mask or ``SampleSplits`` per sample of
        ``sample_lens``."""
        ex = Experts(gen)
        masks = [m.plan(x.device) if isinstance(m, SampleSplits) else m for m in masks]
        cos, sin = rotary(ex.group(positions), self.cfg.head_dim, self.cfg.rope_theta, x.dtype)
        x = ex.group(x)
        with sdpa_kernel(ATTENTION_BACKENDS):
            for layer in self.model.layers:
                x = layer(x, ex, cos, sin, sample_lens, masks)
        return ex.ungroup(ex.apply(x, self.model.norm, self.model.norm_moe_gen))
