"""Inference contexts, and the reading of text and images into them.

A context is the key/value cache of everything the model has read, split by split, laid out exactly as
``model.data`` lays out a training sample: a text segment is ``<|im_start|> ids <|im_end|>`` (causal, one
RoPE position per token); an image enters as its clean latent (t = 0) at position P and its ViT tokens
at P + 1, or as ViT tokens alone; a noised latent being generated sits at the next position and is
never cached, as nothing later may see it. Contexts are immutable: adding to one returns a new one, so
the text- and image-unconditional contexts of classifier-free guidance share their common prefix.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from model.data import gen_size, load_pixels
from model.mot import LATENT, TEXT, VIT, Inputs
from model.run_folder import Bundle


@dataclass(frozen=True)
class Split:
    """One split's inputs, kept so a context can also be recomputed from scratch (no cache)."""

    h: object  # (n, D) input embeddings
    kind: object  # (n,) TEXT / VIT / LATENT
    pos: object  # (n,) RoPE positions
    causal: bool
    und: object = None  # (m,) rows of the understanding expert, built on the host (no device sync per step)
    gen: object = None  # rows of the generation expert


@dataclass(frozen=True)
class Context:
    kvs: tuple = ()  # per layer (k, v), each (1, Hkv, T, Dh); empty before the first split
    pos: int = 0  # the next RoPE position
    splits: tuple = ()
    length: int = 0

    def to_dict(self) -> dict:
        return {"tokens": self.length, "splits": len(self.splits), "next_position": self.pos}


def attend_gqa(q, k, v, mask):
    """The dense attention of inference: SDPA with grouped-query heads and an optional bool (Tq, Tk) mask."""
    import torch.nn.functional as F

    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=q.shape[1] != k.shape[1])


class ContextBuilder:
    """Reads splits after a context over one loaded bundle (batch size 1, as BAGEL's inferencer)."""

    def __init__(self, bundle: Bundle):
        self.b = bundle
        self.model, self.tok, self.cfg = bundle.model, bundle.tok, bundle.mcfg
        self.unit = self.cfg.latent_downsample * self.cfg.latent_patch

    # -- low level ---------------------------------------------------------------------------------

    def _autocast(self):
        import torch

        dev = self.b.device
        return torch.autocast(dev.type, dtype=self.b.dtype,
                              enabled=dev.type == "cuda" and self.b.dtype != torch.float32)

    def _tensor(self, x, dtype=None):
        import torch

        return torch.as_tensor(x, dtype=dtype or torch.long, device=self.b.device)

    def _ids_embed(self, ids):
        return self.model.language_model.model.embed_tokens(self._tensor(ids))

    def _forward(self, ctx: Context, split: Split, cached: bool = True):
        """Hidden states (n, D) of ``split`` read after ``ctx``, and this split's per-layer (k, v)."""
        import torch

        n = split.h.shape[0]
        und, gen = split.und, split.gen
        if cached:
            past = ctx.length
            mask = None
            if split.causal and n > 1:
                mask = torch.ones(n, past + n, dtype=torch.bool, device=self.b.device).tril(diagonal=past)
            with self._autocast():
                out = self.model(Inputs(split.pos, (und, gen), mask, attend_gqa, embeds=split.h,
                                        past_kvs=list(ctx.kvs) or None))
            return out.hidden, out.kvs
        # full recomputation: every split of the context again, then this one, under the dense mask
        from model.attention import CAUSAL, FULL, MaskSpec, dense_mask

        splits = list(ctx.splits) + [split]
        h = torch.cat([s.h for s in splits])
        kind = torch.cat([s.kind for s in splits])
        pos = torch.cat([s.pos for s in splits])
        sid = torch.cat([torch.full((s.h.shape[0],), i, device=self.b.device) for i, s in enumerate(splits)])
        mode = torch.cat([torch.full((s.h.shape[0],), CAUSAL if s.causal else FULL, device=self.b.device)
                          for s in splits])
        mask = dense_mask(MaskSpec(torch.zeros_like(sid), sid, mode))
        routes = ((kind != LATENT).nonzero().squeeze(1), (kind == LATENT).nonzero().squeeze(1))
        with self._autocast():
            out = self.model(Inputs(pos, routes, mask, attend_gqa, embeds=h))
        return out.hidden[-n:], None

    def _extend(self, ctx: Context, split: Split, next_pos: int, cached: bool = True):
        """(hidden of the split, the context with the split appended)."""
        import torch

        hidden, kvs = self._forward(ctx, split, cached)
        if cached:
            kvs = tuple((torch.cat([p[0], k], 2), torch.cat([p[1], v], 2)) if ctx.kvs else (k, v)
                        for p, (k, v) in zip(ctx.kvs or [None] * len(kvs), kvs))
        else:
            kvs = ()
        return hidden, Context(kvs, next_pos, ctx.splits + (split,), ctx.length + split.h.shape[0])

    def _text_split(self, ids: list[int], start: int) -> Split:
        n = len(ids)
        return Split(self._ids_embed(ids), self._tensor([TEXT] * n), self._tensor(list(range(start, start + n))), True,
                     self._tensor(list(range(n))), self._tensor([]))

    def _image_split(self, inner, kind: int, pos: int) -> Split:
        """``<|vision_start|> inner <|vision_end|>`` at one position; inner (n, D)."""
        import torch

        ends = self._ids_embed([self.tok.vision_start, self.tok.vision_end]).to(inner.dtype)
        h = torch.cat([ends[:1], inner, ends[1:]])
        n = inner.shape[0]
        rows = list(range(n + 2))
        und, gen = (rows, []) if kind != LATENT else ([0, n + 1], rows[1:-1])
        return Split(h, self._tensor([TEXT] + [kind] * n + [TEXT]), self._tensor([pos] * (n + 2)), False,
                     self._tensor(und), self._tensor(gen))

    def _latent_embed(self, x, t: float, hw: tuple[int, int]):
        import torch

        from model.mot import latent_pos_ids

        n = x.shape[0]
        pos = latent_pos_ids(hw[0], hw[1], self.cfg.max_latent_side, device=self.b.device)
        tt = torch.full((n,), float(t), device=self.b.device)
        with self._autocast():
            return self.model.embed_latent(x.to(self.b.dtype), tt, pos)

    # -- context building --------------------------------------------------------------------------

    def new_context(self) -> Context:
        return Context()

    def add_text(self, ctx: Context, text: str | list[int], cached: bool = True) -> Context:
        ids = self.tok.encode(text) if isinstance(text, str) else list(text)
        ids = [self.tok.bos, *ids, self.tok.eos]
        _, ctx = self._extend(ctx, self._text_split(ids, ctx.pos), ctx.pos + len(ids), cached)
        return ctx

    def pixels(self, image, size: tuple[int, int]):
        """Encoded bytes or a PIL image -> (3, h, w) in [-1, 1] on the device, resized to (w, h)."""
        if not isinstance(image, (bytes, bytearray)):
            buf = io.BytesIO()
            image.convert("RGB").save(buf, "PNG")
            image = buf.getvalue()
        return load_pixels(bytes(image), size).to(self.b.device)

    def gen_size(self, width: int, height: int) -> tuple[int, int]:
        return gen_size(width, height, self.cfg.gen_max_side, self.unit)

    def add_image(self, ctx: Context, image, width: int = 0, height: int = 0, vae: bool = True, vit: bool = True,
                  cached: bool = True) -> Context:
        """Add an image as its clean latent (position P) and its ViT tokens (P + 1), or either alone."""
        import torch

        from model.mot import patchify

        if not (vae or vit):
            return ctx
        if not (width and height):
            width, height = image_size(image)
        pos = ctx.pos
        if vae:
            w, h = self.gen_size(width, height)
            with torch.no_grad():
                z = self.b.ae.encode(self.pixels(image, (w, h)).unsqueeze(0).float()).squeeze(0)
            p = self.cfg.latent_patch
            x0 = patchify(z, p)
            inner = self._latent_embed(x0, 0.0, (z.shape[1] // p, z.shape[2] // p))
            _, ctx = self._extend(ctx, self._image_split(inner, LATENT, pos), pos + 1, cached)
            pos += 1
        if vit:
            s = self.cfg.vit_image_size
            px = self.pixels(image, (s, s)).unsqueeze(0)
            with self._autocast():
                inner = self.model.embed_vit(px.to(self.b.dtype))
            _, ctx = self._extend(ctx, self._image_split(inner, VIT, pos), pos + 1, cached)
        return ctx

    def build_contexts(self, items: list, images_vae: bool = True) -> tuple[Context, Context, Context]:
        """An interleaved list of str and images -> (full context, text-unconditional, image-unconditional),
        as BAGEL's ``interleave_inference`` builds them; an image item is bytes, a PIL image or
        (bytes, width, height)."""
        full = cfg_text = cfg_img = self.new_context()
        for item in items:
            if isinstance(item, str):
                cfg_text = full
                full = self.add_text(full, item)
                cfg_img = self.add_text(cfg_img, item)
            else:
                data, w, h = item if isinstance(item, tuple) else (item, 0, 0)
                full = self.add_image(full, data, w, h, vae=images_vae)
                cfg_text = full
        return full, cfg_text, cfg_img


def image_size(image) -> tuple[int, int]:
    """(width, height) of encoded image bytes or a PIL image."""
    if isinstance(image, (bytes, bytearray)):
        from PIL import Image

        with Image.open(io.BytesIO(image)) as im:
            return im.size
    return image.size
