"""A Braid sample as one packed BAGEL sequence, laid out as BAGEL's own data pipeline lays out interleaved data.

- text: a causal split ``<|im_start|> text <|im_end|>``; CE predicts every text token and ``<|im_end|>``
  from ``<|im_start|>`` on; rotary positions advance per token;
- an understanding image: a full split ``<|vision_start|> ViT patches <|vision_end|>`` at one rotary position;
- a generation target: a noise split of its latent tokens (MSE; at the position of what follows, as BAGEL
  does), then, when the sample goes on, the clean latents (full split) and, for an understanding image,
  its ViT split, so later text sees the image.

Images go through BAGEL's transform (``ImageTransform``): resized (bicubic) so the long side is at most and
the short side at least the given bounds, both sides multiples of the stride, pixels within a budget; then
scaled to [-1, 1]. The released model uses 980/224/14 for the ViT and 1024/512/16 for the autoencoder.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

SPECIAL = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>")


class BagelTokenizer:
    """BAGEL's tokenizer (Qwen2's ``tokenizer.json``) with its special tokens."""

    def __init__(self, folder: str | Path):
        from tokenizers import Tokenizer

        path = Path(folder) / "tokenizer.json"
        if not path.is_file():
            raise ValueError(f"{Path(folder)} is not a BAGEL checkpoint folder: tokenizer.json is missing")
        try:
            self.tok = Tokenizer.from_file(str(path))
        except Exception as e:  # noqa: BLE001 - a file boundary; the tokenizers library raises bare Exception
            raise ValueError(f"{path}: the tokenizer does not load ({e})") from None
        ids = [self.tok.token_to_id(t) for t in SPECIAL]
        if None in ids:
            raise ValueError(f"{path} lacks BAGEL's special token {SPECIAL[ids.index(None)]}")
        self.bos, self.eos, self.vision_start, self.vision_end = ids
        self.vocab_size = self.tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        return self.tok.decode(list(ids))


@dataclass(frozen=True)
class ImageTransform:
    max_size: int
    min_size: int
    stride: int
    max_pixels: int = 14 * 14 * 9 * 1024

    def size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after BAGEL's resize rule."""
        def fit(w, h, scale):
            return (max(self.stride, int(round(round(w * scale) / self.stride) * self.stride)),
                    max(self.stride, int(round(round(h * scale) / self.stride) * self.stride)))

        scale = min(self.max_size / max(width, height), 1.0)
        scale = max(scale, self.min_size / min(width, height))
        w, h = fit(width, height, scale)
        if w * h > self.max_pixels:
            w, h = fit(w, h, self.max_pixels / (w * h))
        if max(w, h) > self.max_size:
            w, h = fit(w, h, self.max_size / max(w, h))
        return w, h

    def __call__(self, data: bytes):
        """Encoded image bytes -> (3, H, W) float tensor in [-1, 1]."""
        import numpy as np
        import torch
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB")
            im = im.resize(self.size(*im.size), Image.BICUBIC)
            arr = np.asarray(im, dtype=np.float32) / 255.0
        return (torch.from_numpy(arr).permute(2, 0, 1) - 0.5) / 0.5


def transforms_for(cfg) -> tuple[ImageTransform, ImageTransform]:
    """(ViT transform, autoencoder transform) for a BagelConfig: BAGEL's release values, bounded by the model."""
    vit_max = cfg.vit.patch_size * cfg.vit_max_num_patch_per_side if cfg.vit else 980
    vit = ImageTransform(min(980, vit_max), min(224, vit_max), cfg.vit.patch_size if cfg.vit else 14)
    unit = cfg.vae_downsample * cfg.latent_patch_size
    vae_max = min(1024, unit * cfg.max_latent_size)
    return vit, ImageTransform(vae_max, min(512, vae_max // 2), unit)


def vit_patches(img, cfg):
    """A ViT input (3, H, W) -> (its patches (N, p*p*3), their 2D position ids (N,)) in BAGEL's NaViT layout."""
    from model.bagel_vit import patchify, position_ids

    ps = cfg.vit.patch_size
    return patchify(img, ps), position_ids(img.shape[1], img.shape[2], ps, cfg.vit_max_num_patch_per_side)


def image_splits(seg, last: bool, cfg) -> tuple[str, ...]:
    """The splits an image segment becomes in BAGEL's layout: a generation target its noised latent ("noised"),
    then, unless it ends the sample, its clean latent ("clean") and its ViT tokens ("vit") as context for what
    follows; any other image its ViT tokens; nothing the model has no part for."""
    if seg.generation and cfg.visual_gen:
        if last:
            return ("noised",)
        return ("noised", "clean", *(("vit",) if seg.understanding and cfg.vit is not None else ()))
    return ("vit",) if cfg.vit is not None else ()


@dataclass
class Packed:
    """One packed sample: BAGEL's batch fields, plus which segment each CE and MSE row belongs to."""

    batch: dict
    ce_seg: list[int] = field(default_factory=list)
    mse_seg: list[int] = field(default_factory=list)
    n_tokens: int = 0


def pack_sample(sample, tok: BagelTokenizer, cfg, vae, transforms) -> Packed:
    """The packed BAGEL sequence of one Braid sample (every text segment carries CE, every generation target
    MSE); ``batch["timesteps"]`` is 1 on noised latent tokens and 0 on clean ones, to be scaled by the caller."""
    import torch

    from model.bagel_vit import position_ids
    from schemas import TextSegment

    vit_tf, vae_tf = transforms
    b: dict = {k: [] for k in ("packed_text_ids", "packed_text_indexes", "packed_position_ids", "ce_idx",
                               "packed_label_ids", "packed_vit_tokens", "packed_vit_token_indexes",
                               "packed_vit_position_ids", "vit_token_seqlens", "padded_latent",
                               "patchified_vae_latent_shapes", "packed_latent_position_ids",
                               "packed_vae_token_indexes", "mse_idx", "timesteps", "split_lens", "attn_modes")}
    out = Packed(b)
    cur = rope = 0
    p = cfg.latent_patch_size
    last = len(sample.segments) - 1

    def text_token(tid, rope_id):
        nonlocal cur
        b["packed_text_ids"].append(tid)
        b["packed_text_indexes"].append(cur)
        b["packed_position_ids"].append(rope_id)
        cur += 1

    def vit_split(data):
        nonlocal cur, rope
        text_token(tok.vision_start, rope)
        tokens, pos_ids = vit_patches(vit_tf(data), cfg)
        n = tokens.shape[0]
        b["packed_vit_tokens"].append(tokens)
        b["packed_vit_token_indexes"].extend(range(cur, cur + n))
        b["packed_vit_position_ids"].append(pos_ids)
        b["vit_token_seqlens"].append(n)
        b["packed_position_ids"].extend([rope] * n)
        cur += n
        text_token(tok.vision_end, rope)
        b["split_lens"].append(n + 2)
        b["attn_modes"].append("full")
        rope += 1

    def vae_split(z, seg: int, noised: bool):
        nonlocal cur, rope
        h, w = z.shape[1] // p, z.shape[2] // p
        text_token(tok.vision_start, rope)
        n = h * w
        b["padded_latent"].append(z)
        b["patchified_vae_latent_shapes"].append((h, w))
        b["packed_latent_position_ids"].append(position_ids(h, w, 1, cfg.max_latent_size))
        b["packed_vae_token_indexes"].extend(range(cur, cur + n))
        b["timesteps"].extend([1.0 if noised else 0.0] * n)
        if noised:
            b["mse_idx"].extend(range(cur, cur + n))
            out.mse_seg.extend([seg] * n)
        b["packed_position_ids"].extend([rope] * n)
        cur += n
        text_token(tok.vision_end, rope)
        b["split_lens"].append(n + 2)
        b["attn_modes"].append("noise" if noised else "full")
        if not noised:
            rope += 1

    for i, seg in enumerate(sample.segments):
        if isinstance(seg, TextSegment):
            ids = tok.encode(seg.text)
            start = cur
            for k, tid in enumerate([tok.bos, *ids, tok.eos]):
                text_token(tid, rope + k)
            b["ce_idx"].extend(range(start, start + len(ids) + 1))
            b["packed_label_ids"].extend([*ids, tok.eos])
            out.ce_seg.extend([i] * (len(ids) + 1))
            b["split_lens"].append(len(ids) + 2)
            b["attn_modes"].append("causal")
            rope += len(ids) + 2
        else:
            splits = image_splits(seg, i == last, cfg)
            z = vae.encode(vae_tf(seg.data)) if "noised" in splits else None
            for kind in splits:
                if kind == "vit":
                    vit_split(seg.data)
                else:
                    vae_split(z, i, noised=kind == "noised")
    out.n_tokens = cur

    def mask(idx):
        m = torch.zeros(cur, dtype=torch.bool)
        m[idx] = True
        return m

    batch = {"sequence_length": cur, "sample_lens": [cur], "split_lens": b["split_lens"], "attn_modes": b["attn_modes"],
             "packed_text_ids": torch.tensor(b["packed_text_ids"], dtype=torch.long),
             "packed_text_indexes": torch.tensor(b["packed_text_indexes"], dtype=torch.long),
             "packed_position_ids": torch.tensor(b["packed_position_ids"], dtype=torch.long),
             "ce_loss_indexes": mask(b["ce_idx"]),
             "packed_label_ids": torch.tensor(b["packed_label_ids"], dtype=torch.long)}
    if b["packed_vit_tokens"]:
        batch |= {"packed_vit_tokens": torch.cat(b["packed_vit_tokens"]),
                  "packed_vit_token_indexes": torch.tensor(b["packed_vit_token_indexes"]),
                  "packed_vit_position_ids": torch.cat(b["packed_vit_position_ids"]),
                  "vit_token_seqlens": torch.tensor(b["vit_token_seqlens"], dtype=torch.int32)}
    if b["padded_latent"]:
        batch |= {"padded_latent": b["padded_latent"], "patchified_vae_latent_shapes": b["patchified_vae_latent_shapes"],
                  "packed_latent_position_ids": torch.cat(b["packed_latent_position_ids"]),
                  "packed_vae_token_indexes": torch.tensor(b["packed_vae_token_indexes"]),
                  "mse_loss_indexes": mask(b["mse_idx"]), "timesteps": torch.tensor(b["timesteps"])}
    out.batch = batch
    return out
