"""BAGEL's vision encoder: SigLIP as a NaViT over packed patches, with BAGEL's parameter names
(``vit_model.vision_model.*``), plus BAGEL's image transform for understanding images.

Images keep their aspect ratio: each is resized so both sides are multiples of the patch size within
BAGEL's bounds (at most 980 px, at least 378 px on the long side for the released model), normalised to
[-1, 1], cut into patches (row-major, each patch flattened as (row, column, channel)) and encoded as one
sequence per image (full attention inside an image only). Patch positions index a learned table of
``image_size / patch_size`` squared entries, row * max_side + column. BAGEL's attention kernel takes
bfloat16 queries, keys and values; ``bf16_attention`` rounds them the same way so scores agree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class BagelViTConfig:
    """The fields of BAGEL's ``vit_config.json`` (a SigLIP vision configuration) that shape the encoder."""

    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_hidden_layers: int = 26  # the file's count minus one: BAGEL drops the last layer
    num_attention_heads: int = 16
    num_channels: int = 3
    image_size: int = 980
    patch_size: int = 14
    layer_norm_eps: float = 1e-6
    hidden_act: str = "gelu_pytorch_tanh"

    @classmethod
    def from_json(cls, doc: dict) -> BagelViTConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in doc.items() if k in names})
        return dataclasses.replace(cfg, num_hidden_layers=cfg.num_hidden_layers - 1)

    @property
    def max_side(self) -> int:
        return self.image_size // self.patch_size


def gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


class _Attention(nn.Module):
    def __init__(self, cfg: BagelViTConfig):
        super().__init__()
        d = cfg.hidden_size
        self.heads = cfg.num_attention_heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x, seqlens: list[int], bf16_attention: bool):
        n, d = x.shape
        hd = d // self.heads
        q, k, v = (p(x).view(n, self.heads, hd) for p in (self.q_proj, self.k_proj, self.v_proj))
        if bf16_attention:
            q, k, v = (t.to(torch.bfloat16).to(x.dtype) for t in (q, k, v))
        outs = []
        for qs, ks, vs in zip(q.split(seqlens), k.split(seqlens), v.split(seqlens)):
            o = F.scaled_dot_product_attention(qs.transpose(0, 1)[None], ks.transpose(0, 1)[None],
                                               vs.transpose(0, 1)[None])
            outs.append(o[0].transpose(0, 1))
        return self.out_proj(torch.cat(outs).reshape(n, d))


class _MLP(nn.Module):
    def __init__(self, cfg: BagelViTConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x):
        return self.fc2(gelu_tanh(self.fc1(x)))


class _Layer(nn.Module):
    def __init__(self, cfg: BagelViTConfig):
        super().__init__()
        self.self_attn = _Attention(cfg)
        self.layer_norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = _MLP(cfg)
        self.layer_norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x, seqlens, bf16_attention):
        x = x + self.self_attn(self.layer_norm1(x), seqlens, bf16_attention)
        return x + self.mlp(self.layer_norm2(x))


class _Embeddings(nn.Module):
    def __init__(self, cfg: BagelViTConfig):
        super().__init__()
        self.patch_embedding = nn.Linear(cfg.num_channels * cfg.patch_size**2, cfg.hidden_size)
        self.position_embedding = nn.Embedding(cfg.max_side**2, cfg.hidden_size)


class _Encoder(nn.Module):
    def __init__(self, cfg: BagelViTConfig):
        super().__init__()
        self.layers = nn.ModuleList(_Layer(cfg) for _ in range(cfg.num_hidden_layers))


class _Transformer(nn.Module):
    def __init__(self, cfg: BagelViTConfig):
        super().__init__()
        self.embeddings = _Embeddings(cfg)
        self.encoder = _Encoder(cfg)
        self.post_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)


class BagelViT(nn.Module):
    """``vit_model`` of a BAGEL checkpoint."""

    def __init__(self, cfg: BagelViTConfig, bf16_attention: bool = True):
        super().__init__()
        self.cfg = cfg
        self.bf16_attention = bf16_attention
        self.vision_model = _Transformer(cfg)

    def forward(self, patches, position_ids, seqlens: list[int]):
        """Features (N, D) of packed patches (N, 3 * p * p) with flattened positions (N,), one image per seqlen."""
        vm = self.vision_model
        x = vm.embeddings.patch_embedding(patches) + vm.embeddings.position_embedding(position_ids)
        for layer in vm.encoder.layers:
            x = layer(x, seqlens, self.bf16_attention)
        return vm.post_layernorm(x)


def patchify(image, p: int):
    """(C, H, W) -> (H/p * W/p, p * p * C), patches row-major, each flattened as (row, column, channel)."""
    c, h, w = image.shape
    return image.reshape(c, h // p, p, w // p, p).permute(1, 3, 2, 4, 0).reshape(-1, p * p * c)


def position_ids(h: int, w: int, p: int, max_side: int):
    """Flattened learned-table positions of an (h, w) image's patches: row * max_side + column."""
    rows, cols = torch.arange(h // p), torch.arange(w // p)
    return (rows[:, None] * max_side + cols[None, :]).flatten()


def conv_patch_weight(weight):
    """A Conv2d patch embedding weight (D, C, p, p) as the Linear weight (D, p * p * C) BAGEL uses."""
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)
