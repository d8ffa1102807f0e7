"""BAGEL's whole model over one packed batch: the MoT language model, the SigLIP NaViT with its connector
and 2D position embeddings, and the latent side (patching, timestep embedder, latent position embeddings,
``vae2llm`` / ``llm2vae``), with BAGEL's parameter names, computing BAGEL's training losses.

A packed batch is a dict in BAGEL's own vocabulary (the names its data pipeline produces), so the same
batch can be given to BAGEL's code: ``sequence_length``, ``sample_lens``, ``split_lens``, ``attn_modes``,
``packed_position_ids``, ``packed_text_ids`` / ``packed_text_indexes``, ``ce_loss_indexes`` (bool) /
``packed_label_ids``, ``packed_vit_tokens`` / ``packed_vit_token_indexes`` / ``packed_vit_position_ids`` /
``vit_token_seqlens``, ``padded_latent`` / ``patchified_vae_latent_shapes`` / ``packed_latent_position_ids`` /
``packed_vae_token_indexes`` / ``mse_loss_indexes`` (bool), and ``timesteps``: the flow time t in [0, 1] of
each latent token before BAGEL's shift (0 = a clean latent; BAGEL's own code takes logit(t)). The noise is
passed in, so a score never depends on a random state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.bagel_lm import BagelLanguageModel, BagelLMConfig, SampleSplits, sample_mask
from model.bagel_vit import BagelViT, BagelViTConfig, gelu_tanh


@dataclass(frozen=True)
class BagelConfig:
    llm: BagelLMConfig
    vit: BagelViTConfig | None  # None: no understanding images (visual_und off)
    latent_channels: int = 16  # the autoencoder's z channels; 0: no generation (visual_gen off)
    vae_downsample: int = 8
    latent_patch_size: int = 2
    max_latent_size: int = 64
    vit_max_num_patch_per_side: int = 70
    timestep_shift: float = 1.0

    @property
    def visual_gen(self) -> bool:
        return self.latent_channels > 0

    @property
    def patch_latent_dim(self) -> int:
        return self.latent_patch_size**2 * self.latent_channels


def sincos_2d(dim: int, side: int):
    """BAGEL's fixed 2D sin-cos table (side * side, dim): first half encodes the row, second the column."""
    def one(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid = np.meshgrid(np.arange(side, dtype=np.float32), np.arange(side, dtype=np.float32))  # (w, h)
    return torch.from_numpy(np.concatenate([one(dim // 2, grid[0]), one(dim // 2, grid[1])], axis=1)).float()


class PositionTable(nn.Module):
    def __init__(self, side: int, dim: int):
        super().__init__()
        self.pos_embed = nn.Parameter(sincos_2d(dim, side), requires_grad=False)

    def forward(self, ids):
        return self.pos_embed[ids]


class TimestepEmbedder(nn.Module):
    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t):
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(self.mlp[0].weight.dtype))


class Connector(nn.Module):
    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_in, d_out), nn.Linear(d_out, d_out)

    def forward(self, x):
        return self.fc2(gelu_tanh(self.fc1(x)))


class BagelModel(nn.Module):
    def __init__(self, cfg: BagelConfig):
        super().__init__()
        self.cfg = cfg
        self.split_attention = True  # attention split by split (see bagel_lm.split_attention); False: dense masks
        d = cfg.llm.hidden_size
        self.language_model = BagelLanguageModel(cfg.llm)
        if cfg.visual_gen:
            self.time_embedder = TimestepEmbedder(d)
            self.vae2llm = nn.Linear(cfg.patch_latent_dim, d)
            self.llm2vae = nn.Linear(d, cfg.patch_latent_dim)
            self.latent_pos_embed = PositionTable(cfg.max_latent_size, d)
        if cfg.vit is not None:
            self.vit_model = BagelViT(cfg.vit)
            self.connector = Connector(cfg.vit.hidden_size, d)
            self.vit_pos_embed = PositionTable(cfg.vit_max_num_patch_per_side, d)

    def patch_latents(self, latents, shapes):
        """Latents (C, H, W) each -> packed latent tokens (sum h*w, p*p*C), as BAGEL patches them."""
        p, c = self.cfg.latent_patch_size, self.cfg.latent_channels
        out = []
        for z, (h, w) in zip(latents, shapes):
            z = z[:, : h * p, : w * p].reshape(c, h, p, w, p)
            out.append(torch.einsum("chpwq->hwpqc", z).reshape(-1, p * p * c))
        return torch.cat(out)

    def embed_vit(self, patches, pos_ids, seqlens: list[int]):
        """Packed ViT patches (N, p*p*3) of images of ``seqlens`` patches -> LLM inputs (N, D): the ViT, the
        connector and the 2D position embedding at ``pos_ids``."""
        return self.connector(self.vit_model(patches, pos_ids, seqlens)) + self.vit_pos_embed(pos_ids)

    def embed_latent(self, x_t, t, pos_ids):
        """Noised latent tokens (N, p*p*C) at flow times ``t`` (N,) -> LLM inputs (N, D)."""
        return self.vae2llm(x_t) + self.time_embedder(t) + self.latent_pos_embed(pos_ids)

    def forward(self, batch: dict, noise=None) -> dict:
        """{"ce": per-token CE, "mse": per-element squared error (noised tokens x latent dim), "logits",
        "velocity"} of a packed batch (see the module docstring)."""
        lm = self.language_model
        embed = lm.model.embed_tokens
        n = int(batch["sequence_length"])
        x = embed.weight.new_zeros((n, self.cfg.llm.hidden_size))
        x[batch["packed_text_indexes"]] = embed(batch["packed_text_ids"])
        gen = torch.zeros(n, dtype=torch.bool, device=x.device)
        if self.cfg.vit is not None and batch.get("packed_vit_tokens") is not None:
            seqlens = [int(s) for s in batch["vit_token_seqlens"]]
            x[batch["packed_vit_token_indexes"]] = self.embed_vit(batch["packed_vit_tokens"].to(x.dtype),
                                                                  batch["packed_vit_position_ids"], seqlens)
        target = t = None
        if self.cfg.visual_gen and batch.get("padded_latent") is not None:
            clean = self.patch_latents(batch["padded_latent"], batch["patchified_vae_latent_shapes"]).to(x.dtype)
            if noise is None:
                raise ValueError("a batch with latents needs its noise")
            s = self.cfg.timestep_shift
            # the flow time and the noised latents in float32, as BAGEL computes them (its timesteps are float32
            # under autocast); in bf16 a time like 0.6 would otherwise become 0.6016
            t = batch["timesteps"].float()
            t = s * t / (1 + (s - 1) * t)
            noised = ((1 - t[:, None]) * clean.float() + t[:, None] * noise.float()).to(x.dtype)
            x[batch["packed_vae_token_indexes"]] = self.embed_latent(noised, t, batch["packed_latent_position_ids"])
            gen[batch["packed_vae_token_indexes"]] = True
            target = (noise.float() - clean.float())[t > 0]  # float32 too, as BAGEL's
        sample_lens = [int(v) for v in batch["sample_lens"]]
        masks = [sp if self.split_attention else sample_mask(list(sp.lens), list(sp.modes), x.device)
                 for sp in sample_splits(batch)]
        h = lm(x, batch["packed_position_ids"], gen, sample_lens, masks)
        out = {"ce": None, "mse": None, "logits": None, "velocity": None}
        if target is not None:
            out["velocity"] = self.llm2vae(h[batch["mse_loss_indexes"]])
            out["mse"] = (out["velocity"] - target) ** 2
        if batch.get("ce_loss_indexes") is not None:
            out["logits"] = lm.lm_head(h[batch["ce_loss_indexes"]])
            out["ce"] = F.cross_entropy(out["logits"].float(), batch["packed_label_ids"], reduction="none")
        return out


def sample_splits(batch: dict) -> list[SampleSplits]:
    """Each packed sample's splits (lengths and attention modes), from the batch's ``sample_lens``,
    ``split_lens`` and ``attn_modes``."""
    out, at = [], 0
    for length in batch["sample_lens"]:
        lens, modes, used = [], [], 0
        while used < int(length):
            lens.append(int(batch["split_lens"][at]))
            modes.append(batch["attn_modes"][at])
            used += lens[-1]
            at += 1
        out.append(SampleSplits(tuple(lens), tuple(modes)))
    return out
