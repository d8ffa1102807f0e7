"""The bundled BAGEL-style Mixture-of-Transformers: architecture only.

Every decoder block holds two experts with their own norms, attention projections, QK-norms and MLP:
the understanding expert (text and ViT tokens) and the generation expert (image-latent tokens), named
``*_moe_gen`` as in BAGEL's checkpoints. Routing is hard, by token kind. Attention is one computation
over the whole packed sequence under the generalised causal mask built in ``model.attention``.

Shapes: T = tokens in the packed sequence, D = ``d_model``, H / Hkv = query / key-value heads,
Dh = ``head_dim``; the batch dimension is always 1 (one packed sequence).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from model import kernels

TEXT, VIT, LATENT = 0, 1, 2  # token kinds; only LATENT goes to the generation expert


@dataclass(frozen=True)
class MoTConfig:
    """Model shape. ``vocab_size`` is set from the tokenizer when a run starts."""

    # the defaults are the base preset: Qwen2.5-1.5B's layer shape, 10 layers (about 0.57B per expert);
    # wide and shallow keeps a GPU busy (35% MFU on an H200 against 26% for 1024 wide x 28 deep)
    vocab_size: int = 32000
    d_model: int = 1536  # LLM width D
    n_layers: int = 10
    n_heads: int = 12  # query heads H
    n_kv_heads: int = 2  # key/value heads (grouped-query attention)
    head_dim: int = 128
    d_ff: int = 8960  # SwiGLU hidden width
    rope_theta: float = 1_000_000.0
    rms_eps: float = 1e-6
    # understanding images: a small ViT on square inputs, then a 2-layer MLP connector
    vit_image_size: int = 224  # pixels per side of the (resized) ViT input
    vit_patch: int = 14
    vit_d: int = 768
    vit_layers: int = 12
    vit_heads: int = 12
    # generation images: latents of a frozen autoencoder, patchified 2x2
    latent_channels: int = 192  # the autoencoder's channels (pixel space: 3 * downsample**2)
    latent_downsample: int = 8  # the autoencoder's pixels per latent cell
    latent_patch: int = 2
    gen_max_side: int = 512  # generation images are resized so their longer side fits this
    timestep_shift: float = 1.0  # t' = s*t / (1 + (s-1)*t); BAGEL: 1 in pre-training, 4 at higher resolution

    @property
    def vit_grid(self) -> int:
        return self.vit_image_size // self.vit_patch

    @property
    def max_latent_side(self) -> int:
        return self.gen_max_side // (self.latent_downsample * self.latent_patch)

    @property
    def latent_patch_dim(self) -> int:
        return self.latent_channels * self.latent_patch**2

    def replace(self, **changes) -> MoTConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def preset(cls, name: str) -> MoTConfig:
        presets = {
            # CPU tests: a few seconds per hundred steps
            "tiny": cls(vocab_size=512, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16, d_ff=128,
                        rope_theta=10_000.0, vit_image_size=32, vit_patch=8, vit_d=32, vit_layers=1, vit_heads=2,
                        latent_channels=48, latent_downsample=4, gen_max_side=32),
            "small": cls(vocab_size=8192, d_model=512, n_layers=8, n_heads=8, n_kv_heads=2, head_dim=64, d_ff=1536,
                         vit_image_size=224, vit_patch=14, vit_d=384, vit_layers=6, vit_heads=6,
                         latent_channels=192, latent_downsample=8, gen_max_side=256),
            "base": cls(),  # about 0.5B parameters per expert
        }
        if name not in presets:
            raise KeyError(f"unknown model preset {name!r}; expected one of {', '.join(presets)}")
        return presets[name]


# ---------------------------------------------------------------------------------------------- helpers


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        if kernels.on("rmsnorm", x):
            return kernels.rms_norm(x, self.weight, self.eps)
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight * x).to(dtype)  # keeps bf16 activations bf16 under autocast


def rope_cos_sin(pos: torch.Tensor, head_dim: int, theta: float):
    """pos (T,) -> cos, sin (T, 1, Dh) for rotate-half RoPE."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=pos.device, dtype=torch.float32) / head_dim))
    ang = pos.float()[:, None] * inv[None, :]  # (T, Dh/2)
    ang = torch.cat([ang, ang], dim=-1)[:, None, :]  # (T, 1, Dh)
    return ang.cos(), ang.sin()


def apply_rope(x, cos, sin):
    """x (T, h, Dh) rotated by position."""
    x1, x2 = x.chunk(2, dim=-1)
    rot = torch.cat([-x2, x1], dim=-1)
    return (x.float() * cos + rot.float() * sin).to(x.dtype)


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """Fixed 2D sin-cos table (grid*grid, dim); row r, column c sits at r*grid + c."""
    half = dim // 2
    omega = 1.0 / 10000 ** (torch.arange(half // 2, dtype=torch.float64) / (half / 2))
    coords = torch.arange(grid, dtype=torch.float64)
    rr, cc = torch.meshgrid(coords, coords, indexing="ij")

    def emb(p):  # (grid*grid,) -> (grid*grid, half)
        out = p.reshape(-1)[:, None] * omega[None, :]
        return torch.cat([out.sin(), out.cos()], dim=1)

    return torch.cat([emb(rr), emb(cc)], dim=1).float()


def timestep_embedding(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """t (N,) in [0, 1] -> (N, dim), DiT-style sinusoidal features of 1000*t."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


def route(x, und_idx, gen_idx, f_und, f_gen):
    """Apply f_und to the rows of x at und_idx and f_gen to those at gen_idx; (T, *) -> (T, *').

    The two are index tensors, or slices when the rows are sorted by expert (understanding rows first,
    ``model.data.pack(sort_experts=True)``): then routing is two views and a concatenation."""
    if isinstance(und_idx, slice):
        return torch.cat([f_und(x[und_idx]), f_gen(x[gen_idx])])
    a = f_und(x.index_select(0, und_idx))
    b = f_gen(x.index_select(0, gen_idx))
    out = a.new_empty((x.shape[0],) + a.shape[1:])
    out = out.index_copy(0, und_idx, a)
    return out.index_copy(0, gen_idx, b)


# ------------------------------------------------------------------------------------- language model


class MLP(nn.Module):
    def __init__(self, d: int, d_ff: int):
        super().__init__()
        self.gate_proj = nn.Linear(d, d_ff, bias=False)
        self.up_proj = nn.Linear(d, d_ff, bias=False)
        self.down_proj = nn.Linear(d_ff, d, bias=False)

    def forward(self, x):  # (n, D) -> (n, D)
        g, u = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(kernels.silu_mul(g, u) if kernels.on("swiglu", g) else F.silu(g) * u)


class MoTAttention(nn.Module):
    """Per-expert q/k/v/o projections and QK-norms; one shared attention over the packed sequence."""

    def __init__(self, cfg: MoTConfig):
        super().__init__()
        self.cfg = cfg
        H, Hkv, Dh, D = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.d_model
        self.q_proj = nn.Linear(D, H * Dh, bias=True)
        self.k_proj = nn.Linear(D, Hkv * Dh, bias=True)
        self.v_proj = nn.Linear(D, Hkv * Dh, bias=True)
        self.o_proj = nn.Linear(H * Dh, D, bias=False)
        self.q_norm = RMSNorm(Dh, cfg.rms_eps)
        self.k_norm = RMSNorm(Dh, cfg.rms_eps)
        self.q_proj_moe_gen = nn.Linear(D, H * Dh, bias=True)
        self.k_proj_moe_gen = nn.Linear(D, Hkv * Dh, bias=True)
        self.v_proj_moe_gen = nn.Linear(D, Hkv * Dh, bias=True)
        self.o_proj_moe_gen = nn.Linear(H * Dh, D, bias=False)
        self.q_norm_moe_gen = RMSNorm(Dh, cfg.rms_eps)
        self.k_norm_moe_gen = RMSNorm(Dh, cfg.rms_eps)

    def _qkv(self, x, gen: bool):  # (n, D) -> (n, (H + 2*Hkv) * Dh), QK-normed per head
        c = self.cfg
        if gen:
            proj, q_norm, k_norm = (self.q_proj_moe_gen, self.k_proj_moe_gen, self.v_proj_moe_gen), \
                self.q_norm_moe_gen, self.k_norm_moe_gen
        else:
            proj, q_norm, k_norm = (self.q_proj, self.k_proj, self.v_proj), self.q_norm, self.k_norm
        # one matmul for q, k and v: the k/v outputs alone are too narrow to fill the GPU
        qkv = F.linear(x, torch.cat([p.weight for p in proj]), torch.cat([p.bias for p in proj]))
        q, k, v = qkv.split([c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim, c.n_kv_heads * c.head_dim], -1)
        q = q_norm(q.unflatten(-1, (c.n_heads, c.head_dim))).flatten(1)
        k = k_norm(k.unflatten(-1, (c.n_kv_heads, c.head_dim))).flatten(1)
        return torch.cat([q, k, v], dim=-1)

    def forward(self, x, und_idx, gen_idx, rope, attn_mask, attend, past_kv=None):
        """x (T, D) -> (T, D), plus this call's (k, v), each (1, Hkv, T, Dh) with RoPE applied.

        ``past_kv`` (k, v) of earlier tokens is prepended for cached decoding; ``attn_mask`` then spans
        (T, T_past + T)."""
        c = self.cfg
        qkv = route(x, und_idx, gen_idx, lambda a: self._qkv(a, False), lambda a: self._qkv(a, True))
        q, k, v = qkv.split([c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim, c.n_kv_heads * c.head_dim], -1)
        cos, sin = rope
        q = q.unflatten(-1, (c.n_heads, c.head_dim))  # (T, H, Dh)
        k = k.unflatten(-1, (c.n_kv_heads, c.head_dim))  # (T, Hkv, Dh)
        v = v.unflatten(-1, (c.n_kv_heads, c.head_dim))
        if kernels.on("rope", q):
            q, k = kernels.rope(q.transpose(0, 1).unsqueeze(0), k.transpose(0, 1).unsqueeze(0), cos, sin)
            v = v.transpose(0, 1).unsqueeze(0)
        else:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            q, k, v = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))  # (1, h, T, Dh)
        new_kv = (k, v)
        if past_kv is not None:
            k = torch.cat([past_kv[0], k], dim=2)
            v = torch.cat([past_kv[1], v], dim=2)
        y = attend(q, k, v, attn_mask)  # (1, H, T, Dh)
        y = y.squeeze(0).transpose(0, 1).flatten(1)  # (T, H*Dh)
        return route(y, und_idx, gen_idx, self.o_proj, self.o_proj_moe_gen), new_kv


class MoTBlock(nn.Module):
    def __init__(self, cfg: MoTConfig):
        super().__init__()
        self.self_attn = MoTAttention(cfg)
        self.mlp = MLP(cfg.d_model, cfg.d_ff)
        self.mlp_moe_gen = MLP(cfg.d_model, cfg.d_ff)
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.input_layernorm_moe_gen = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.post_attention_layernorm_moe_gen = RMSNorm(cfg.d_model, cfg.rms_eps)

    def forward(self, x, und_idx, gen_idx, rope, attn_mask, attend, past_kv=None):
        h = route(x, und_idx, gen_idx, self.input_layernorm, self.input_layernorm_moe_gen)
        a, kv = self.self_attn(h, und_idx, gen_idx, rope, attn_mask, attend, past_kv)
        x = x + a
        x = x + route(x, und_idx, gen_idx, lambda t: self.mlp(self.post_attention_layernorm(t)),
                      lambda t: self.mlp_moe_gen(self.post_attention_layernorm_moe_gen(t)))
        return x, kv


class LanguageModel(nn.Module):
    def __init__(self, cfg: MoTConfig):
        super().__init__()
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.model.layers = nn.ModuleList(MoTBlock(cfg) for _ in range(cfg.n_layers))
        self.model.norm = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.model.norm_moe_gen = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)


# ----------------------------------------------------------------------------------------------- vision


class ViTLayer(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.layer_norm1 = nn.LayerNorm(d, eps=1e-6)
        self.qkv = nn.Linear(d, 3 * d)
        self.out_proj = nn.Linear(d, d)
        self.layer_norm2 = nn.LayerNorm(d, eps=1e-6)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x):  # (N, P, d) -> (N, P, d), full attention inside each image
        q, k, v = self.qkv(self.layer_norm1(x)).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)  # (N, heads, P, d/heads)
        x = x + self.out_proj(y.transpose(1, 2).flatten(2))
        return x + self.fc2(F.gelu(self.fc1(self.layer_norm2(x)), approximate="tanh"))


class ViT(nn.Module):
    """Patch embedding + fixed 2D sin-cos positions + pre-norm transformer on square images."""

    def __init__(self, cfg: MoTConfig):
        super().__init__()
        self.patch = cfg.vit_patch
        self.patch_embedding = nn.Linear(3 * cfg.vit_patch**2, cfg.vit_d)
        self.register_buffer("pos_embed", sincos_2d(cfg.vit_grid, cfg.vit_d), persistent=False)
        self.layers = nn.ModuleList(ViTLayer(cfg.vit_d, cfg.vit_heads) for _ in range(cfg.vit_layers))
        self.post_layernorm = nn.LayerNorm(cfg.vit_d, eps=1e-6)

    def forward(self, pixels):  # (N, 3, S, S) in [-1, 1] -> (N, P, vit_d), P = (S/patch)^2 in row order
        p = self.patch
        x = pixels.unfold(2, p, p).unfold(3, p, p)  # (N, 3, g, g, p, p)
        x = x.permute(0, 2, 3, 1, 4, 5).flatten(3).flatten(1, 2)  # (N, P, 3*p*p)
        x = self.patch_embedding(x) + self.pos_embed
        for layer in self.layers:
            x = layer(x)
        return self.post_layernorm(x)


class TimestepEmbedder(nn.Module):
    def __init__(self, d: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, d), nn.SiLU(), nn.Linear(d, d))

    def forward(self, t):  # (N,) -> (N, D)
        return self.mlp(timestep_embedding(t, self.freq_dim))


def patchify(z: torch.Tensor, p: int) -> torch.Tensor:
    """Latent (C, h, w) -> tokens (h/p * w/p, C*p*p) in row order."""
    C, h, w = z.shape
    z = z.reshape(C, h // p, p, w // p, p).permute(1, 3, 0, 2, 4)
    return z.reshape((h // p) * (w // p), C * p * p)


def unpatchify(x: torch.Tensor, p: int, C: int, h: int, w: int) -> torch.Tensor:
    """Tokens (h/p * w/p, C*p*p) -> latent (C, h, w); inverse of ``patchify``."""
    x = x.reshape(h // p, w // p, C, p, p).permute(2, 0, 3, 1, 4)
    return x.reshape(C, h, w)


def latent_pos_ids(h: int, w: int, max_side: int, device=None) -> torch.Tensor:
    """Indices into the latent 2D table for an (h, w) token grid ('extrapolate': row*max_side + col)."""
    r = torch.arange(h, device=device)[:, None] * max_side
    return (r + torch.arange(w, device=device)[None, :]).reshape(-1)


# ------------------------------------------------------------------------------------------------ model


@dataclass
class Inputs:
    """What one forward reads: training, scoring and inference all fill this and call ``MoT.forward``.

    The packed sequence is given as text ids (``input_ids``, (T,)) with ViT pixels and latent inputs placed
    at ``vit_idx`` / ``latent_idx``, or as ready embeddings (``embeds``, (T, D)). ``routes`` are the rows
    of the understanding and generation experts (index tensors, or slices when sorted by expert).
    ``attend(q, k, v, attn_mask)`` is ``model.attention.attend`` or another attention with that signature.
    Losses are computed when their targets are given: next-token CE at ``ce_idx`` against ``ce_targets``,
    velocity MSE at the latent tokens ``mse_rows`` (indices into the latent tokens) against ``v_target``."""

    position_ids: torch.Tensor
    routes: tuple
    attn_mask: object
    attend: object
    input_ids: torch.Tensor | None = None
    embeds: torch.Tensor | None = None
    vit_pixels: torch.Tensor | None = None
    vit_idx: torch.Tensor | None = None
    latent_x: torch.Tensor | None = None
    latent_t: torch.Tensor | None = None
    latent_pos: torch.Tensor | None = None
    latent_idx: torch.Tensor | None = None
    past_kvs: list | None = None
    ce_idx: torch.Tensor | None = None
    ce_targets: torch.Tensor | None = None
    mse_rows: torch.Tensor | None = None
    v_target: torch.Tensor | None = None


@dataclass
class Outputs:
    """Final-normed hidden states (T, D), per-layer (k, v) of these tokens, and the losses asked for:
    per-token CE (at ``ce_idx``) and MSE (at ``mse_rows``) and their means (float32, 0-dim)."""

    hidden: torch.Tensor
    kvs: list = field(default_factory=list)
    ce_tok: torch.Tensor | None = None
    mse_tok: torch.Tensor | None = None
    ce: torch.Tensor | None = None
    mse: torch.Tensor | None = None


class MoT(nn.Module):
    def __init__(self, cfg: MoTConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.d_model
        self.language_model = LanguageModel(cfg)
        self.vit_model = ViT(cfg)
        self.connector = nn.Module()
        self.connector.fc1 = nn.Linear(cfg.vit_d, D)
        self.connector.fc2 = nn.Linear(D, D)
        self.register_buffer("vit_pos_embed", sincos_2d(cfg.vit_grid, D), persistent=False)
        self.register_buffer("latent_pos_embed", sincos_2d(cfg.max_latent_side, D), persistent=False)
        self.time_embedder = TimestepEmbedder(D)
        self.vae2llm = nn.Linear(cfg.latent_patch_dim, D)
        self.llm2vae = nn.Linear(D, cfg.latent_patch_dim)
        self.apply(self._init)
        nn.init.zeros_(self.llm2vae.weight)  # the velocity head starts at zero, as in BAGEL
        nn.init.zeros_(self.llm2vae.bias)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def compile_blocks(self, **kwargs) -> None:
        """torch.compile each decoder block and ViT layer (one graph each kind: the layers share code)."""
        for layer in (*self.language_model.model.layers, *self.vit_model.layers):
            layer.compile(**kwargs)

    def compile_trunk(self, **kwargs) -> None:
        """torch.compile the whole decoder stack as one graph (fusion across block boundaries)."""
        self.forward_hidden = torch.compile(self.forward_hidden, **kwargs)

    def num_params(self, expert: str = "und") -> int:
        """LLM parameters one token of the expert passes through ("und" or "gen"; embeddings and lm_head in)."""
        params = dict(self.language_model.named_parameters())
        n = 0
        for name, p in params.items():
            is_gen = "_moe_gen" in name
            if (expert == "und" and is_gen) or (expert == "gen" and not is_gen and _gen_twin(name) in params):
                continue
            n += p.numel()
        return n

    # -- embeddings ---------------------------------------------------------------------------------

    def embed_vit(self, pixels):  # (N, 3, S, S) -> (N*P, D), with the LLM-width 2D position added
        c = self.connector
        x = c.fc2(F.gelu(c.fc1(self.vit_model(pixels)), approximate="tanh")) + self.vit_pos_embed
        return x.flatten(0, 1)

    def embed_latent(self, x_t, t, pos_ids):  # (n, patch_dim), (n,), (n,) -> (n, D)
        return self.vae2llm(x_t) + self.time_embedder(t) + self.latent_pos_embed[pos_ids]

    def embed(self, input_ids, kind, vit_pixels=None, latent_x=None, latent_t=None, latent_pos=None,
              vit_idx=None, latent_idx=None):
        """Packed input embeddings (T, D): text ids where kind is TEXT, ViT tokens at ``vit_idx`` and
        latent tokens at ``latent_idx`` in sequence order."""
        h = self.language_model.model.embed_tokens(input_ids)
        if vit_pixels is not None and vit_pixels.shape[0]:
            h = h.index_copy(0, vit_idx, self.embed_vit(vit_pixels).to(h.dtype))
        if latent_x is not None and latent_x.shape[0]:
            h = h.index_copy(0, latent_idx, self.embed_latent(latent_x, latent_t, latent_pos).to(h.dtype))
        return h

    # -- trunk --------------------------------------------------------------------------------------

    def forward_hidden(self, h, position_ids, und_idx, gen_idx, attn_mask, attend, past_kvs=None):
        """(T, D) embeddings -> (T, D) final-normed hidden states and per-layer (k, v) of these tokens.

        ``attend(q, k, v, attn_mask)`` is ``model.attention.attend`` (dense bool mask or FlexAttention block
        mask); ``past_kvs`` (one (k, v) per layer) extends the keys for cached decoding. ``und_idx`` and
        ``gen_idx`` are index tensors or, for expert-sorted rows, slices (see ``route``)."""
        rope = rope_cos_sin(position_ids, self.cfg.head_dim, self.cfg.rope_theta)
        kvs = []
        for i, layer in enumerate(self.language_model.model.layers):
            h, kv = layer(h, und_idx, gen_idx, rope, attn_mask, attend, past_kvs[i] if past_kvs else None)
            kvs.append(kv)
        m = self.language_model.model
        return route(h, und_idx, gen_idx, m.norm, m.norm_moe_gen), kvs

    def forward(self, x: Inputs) -> Outputs:
        """The one forward pass: embeddings, the decoder stack, and the losses whose targets are given."""
        h = x.embeds
        if h is None:
            h = self.embed(x.input_ids, None, x.vit_pixels, x.latent_x, x.latent_t, x.latent_pos, x.vit_idx,
                           x.latent_idx)
        hidden, kvs = self.forward_hidden(h, x.position_ids, *x.routes, x.attn_mask, x.attend, x.past_kvs)
        out = Outputs(hidden, kvs)
        if x.ce_idx is None and x.mse_rows is None:
            return out
        zero = hidden.sum().float() * 0.0  # keeps a graph (and every rank's backward) when a batch lacks one loss
        if x.ce_idx is not None and x.ce_idx.numel():
            logits = self.logits(hidden.index_select(0, x.ce_idx)).float()
            out.ce_tok = F.cross_entropy(logits, x.ce_targets, reduction="none")
            out.ce = out.ce_tok.mean()
        else:
            out.ce_tok, out.ce = hidden.new_zeros(0).float(), zero
        if x.mse_rows is not None and x.mse_rows.numel():
            rows = x.latent_idx.index_select(0, x.mse_rows)
            pred = self.velocity(hidden.index_select(0, rows)).float()
            out.mse_tok = (pred - x.v_target).pow(2).mean(-1)
            out.mse = out.mse_tok.mean()
        else:
            out.mse_tok, out.mse = hidden.new_zeros(0).float(), zero
        return out

    def logits(self, hidden):  # (n, D) -> (n, V)
        return self.language_model.lm_head(hidden)

    def velocity(self, hidden):  # (n, D) -> (n, patch_dim)
        return self.llm2vae(hidden)


def _gen_twin(name: str) -> str:
    """The generation-expert name of an understanding parameter (``...mlp.up_proj.weight`` -> ``...mlp_moe_gen...``)."""
    parts = name.split(".")
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] in ("q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm", "mlp", "input_layernorm",
                        "post_attention_layernorm", "norm"):
            return ".".join(parts[:i] + [parts[i] + "_moe_gen"] + parts[i + 1:])
    return ""


def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    return shift * t / (1 + (shift - 1) * t)
