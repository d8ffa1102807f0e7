"""Inference with a trained MoT: load a run folder, build an interleaved context, generate text and images.

A context is the key/value cache of everything the model has read, split by split, laid out exactly as
``model.data`` lays out a training sample: a text segment is ``<|im_start|> ids <|im_end|>`` (causal, one
RoPE position per token); an image enters as its clean latent (t = 0) at position P and its ViT tokens
at P + 1, or as ViT tokens alone; a noised latent being generated sits at the next position and is
never cached, as nothing later may see it. Contexts are immutable: adding to one returns a new one, so
the text- and image-unconditional contexts of classifier-free guidance share their common prefix.

Images are drawn with BAGEL's rectified-flow Euler sampler: t runs from 1 to 0 over ``steps`` steps,
shifted as s*t / (1 + (s-1)*t), and x <- x - v*dt. Guidance follows BAGEL's inferencer: a text scale
against the context without its last text, an image scale against the text-only context, applied only
for t in ``(interval[0], interval[1]]``, then renormalised by clamp(|v| / |v_cfg|, renorm_min, 1)
(``global``: one norm; ``channel``: per token; ``text_channel``: per token, on the text term alone).
"""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from .autoencoder import AutoencoderConfig, AutoencoderError, build_autoencoder
from .data import DataConfig, TextTokenizer, gen_size, load_pixels
from .mot import LATENT, TEXT, VIT, MoT, MoTConfig

# The system prompt of Braid's reasoning samples (captioners.prompts_reasoning.THINK_SYSTEM, which model/
# may not import); think mode opens the context with it, as the training samples do.
GEN_THINK_SYSTEM = (
    "Plan before you draw. First reason about what the image has to show, inside <think> </think> tags, "
    "then produce the image. Answer in the form: <think> your plan </think> image."
)
RENORM_TYPES = ("global", "channel", "text_channel")


class InferError(ValueError):
    """A run folder or an inference request cannot be used; one sentence."""


@dataclass(frozen=True)
class TextGenConfig:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = the whole vocabulary
    stop: tuple[str, ...] = ()  # stop strings besides <|im_end|> (e.g. "</think>")


@dataclass(frozen=True)
class ImageGenConfig:
    """BAGEL's text-to-image defaults (inference.ipynb): cfg_text 4, cfg_img 1, interval [0.4, 1], shift 3."""

    steps: int = 50  # Euler steps (model evaluations per guidance branch)
    timestep_shift: float = 3.0
    cfg_text_scale: float = 4.0
    cfg_img_scale: float = 1.0
    cfg_interval: tuple[float, float] = (0.4, 1.0)
    cfg_renorm_type: str = "global"
    cfg_renorm_min: float = 0.0

    def check(self) -> None:
        if self.steps < 1:
            raise InferError("image generation needs at least one step")
        if self.cfg_renorm_type not in RENORM_TYPES:
            raise InferError(f"cfg_renorm_type must be one of {', '.join(RENORM_TYPES)}")
        if self.timestep_shift <= 0:
            raise InferError("timestep_shift must be positive")


# ------------------------------------------------------------------------------------------ run folder


@dataclass
class Bundle:
    """A loaded run: model (eval mode), tokenizer, autoencoder and the run's configs."""

    model: object
    tok: TextTokenizer
    ae: object
    mcfg: MoTConfig
    dcfg: DataConfig
    device: object
    dtype: object
    run_dir: Path | None = None
    weights: str = ""


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise InferError(f"{path.parent} is not a complete run folder: {what} ({path.name}) is missing")
    return path


def _section(cls, doc: dict, name: str, where: Path):
    known = {f.name for f in dataclasses.fields(cls)}
    data = doc.get(name)
    if not isinstance(data, dict):
        raise InferError(f"{where}: no '{name}' section")
    unknown = set(data) - known
    if unknown:
        raise InferError(f"{where}: '{name}' has fields this version does not know: {', '.join(sorted(unknown))}")
    try:
        return cls(**data)
    except TypeError as e:
        raise InferError(f"{where}: '{name}' section is malformed ({e})") from None


def load_run(run_dir: str | Path, device: str | None = None, weights: str = "auto", dtype=None) -> Bundle:
    """Load ``config.json``, ``tokenizer/``, ``autoencoder.json`` and the safetensors weights of a run.

    ``weights``: "auto" (``ema.safetensors`` when present, else ``model.safetensors``), "ema" or "model".
    Raises InferError naming the file and what is missing or does not match."""
    import torch

    from .checkpoint import load_tensors

    run = Path(run_dir)
    if not run.is_dir():
        raise InferError(f"run folder {run} does not exist")
    cfg_path = _need(run / "config.json", "the model configuration")
    try:
        doc = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InferError(f"{cfg_path}: not valid JSON ({e})") from None
    mcfg = _section(MoTConfig, doc, "model", cfg_path)
    dcfg = _section(DataConfig, doc, "data", cfg_path) if "data" in doc else DataConfig()
    ae_cfg = _section(AutoencoderConfig, doc, "autoencoder", cfg_path) if "autoencoder" in doc else None
    ae_path = _need(run / "autoencoder.json", "the autoencoder settings")
    try:
        ae_file = AutoencoderConfig.load(ae_path)
        ae = build_autoencoder(ae_file)
    except (AutoencoderError, json.JSONDecodeError, TypeError) as e:
        raise InferError(f"{ae_path}: {e}") from None
    if ae_cfg is not None and ae_cfg != ae_file:
        raise InferError(f"{ae_path} does not match the autoencoder section of {cfg_path}")
    if ae_file.latent_channels != mcfg.latent_channels or ae_file.downsample != mcfg.latent_downsample:
        raise InferError(f"{ae_path}: the autoencoder gives {ae_file.latent_channels} channels at downsample "
                         f"{ae_file.downsample}, the model expects {mcfg.latent_channels} at {mcfg.latent_downsample}")
    _need(run / "tokenizer" / "tokenizer.json", "the tokenizer")
    try:
        tok = TextTokenizer.load(run / "tokenizer")
    except Exception as e:  # noqa: BLE001 - a file boundary; the tokenizers library raises bare Exception
        raise InferError(f"{run / 'tokenizer'}: the tokenizer does not load ({e})") from None
    if tok.vocab_size > mcfg.vocab_size:
        raise InferError(f"{run / 'tokenizer'} has {tok.vocab_size} tokens but the model's vocabulary is "
                         f"{mcfg.vocab_size}: tokenizer and config are from different runs")

    names = {"auto": ("ema.safetensors", "model.safetensors"), "ema": ("ema.safetensors",),
             "model": ("model.safetensors",)}
    if weights not in names:
        raise InferError("weights must be auto, ema or model")
    found = [run / n for n in names[weights] if (run / n).is_file()]
    if not found:
        raise InferError(f"{run} holds no weights ({' or '.join(names[weights])})")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        state = load_tensors(found[0])
    except Exception as e:  # noqa: BLE001 - a file boundary; safetensors raises its own error types
        raise InferError(f"{found[0]}: not a readable safetensors file ({e})") from None
    model = MoT(mcfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        what = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise InferError(f"{found[0]} does not match config.json: {what} "
                         f"({len(missing)} missing, {len(extra)} unexpected tensors)")
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise InferError(f"{found[0]} does not match config.json: {k} is {tuple(v.shape)}, "
                             f"the config makes it {tuple(expected[k].shape)}")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    if dtype is None:
        dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    model = model.to(device=dev, dtype=dtype).eval().requires_grad_(False)  # inference: no autograd graphs
    return Bundle(model, tok, ae, mcfg, dcfg, dev, dtype, run, found[0].name)


# ------------------------------------------------------------------------------------------- contexts


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


class Inferencer:
    """Context building and generation over one loaded bundle (batch size 1, as BAGEL's inferencer)."""

    def __init__(self, bundle: Bundle):
        self.b = bundle
        self.model, self.tok, self.cfg = bundle.model, bundle.tok, bundle.mcfg
        self.unit = self.cfg.latent_downsample * self.cfg.latent_patch

    # -- low level ---------------------------------------------------------------------------------

    def _autocast(self):
        import torch

        dev = self.b.device
        return torch.autocast(dev.type, dtype=self.b.dtype, enabled=dev.type == "cuda" and self.b.dtype != torch.float32)

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
                return self.model.forward_hidden(split.h, split.pos, und, gen, mask, attend_gqa,
                                                 past_kvs=list(ctx.kvs) or None)
        # full recomputation: every split of the context again, then this one, under the dense mask
        from .attention import CAUSAL, FULL, MaskSpec, dense_mask

        splits = list(ctx.splits) + [split]
        h = torch.cat([s.h for s in splits])
        kind = torch.cat([s.kind for s in splits])
        pos = torch.cat([s.pos for s in splits])
        sid = torch.cat([torch.full((s.h.shape[0],), i, device=self.b.device) for i, s in enumerate(splits)])
        mode = torch.cat([torch.full((s.h.shape[0],), CAUSAL if s.causal else FULL, device=self.b.device)
                          for s in splits])
        mask = dense_mask(MaskSpec(torch.zeros_like(sid), sid, mode))
        with self._autocast():
            hidden, _ = self.model.forward_hidden(h, pos, (kind != LATENT).nonzero().squeeze(1),
                                                  (kind == LATENT).nonzero().squeeze(1), mask, attend_gqa)
        return hidden[-n:], None

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

        from .mot import latent_pos_ids

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

        from .mot import patchify

        if not (vae or vit):
            return ctx
        if not (width and height):
            width, height = _image_size(image)
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

    # -- text --------------------------------------------------------------------------------------

    def generate_text(self, ctx: Context, gcfg: TextGenConfig = TextGenConfig(), seed: int = 0,
                      cached: bool = True, prefix: str = "") -> tuple[str, Context, list[int]]:
        """Open a text segment (and ``prefix``), generate until <|im_end|>, a stop string or the token limit,
        then close the segment. Returns (text without prefix, context after the closed segment, ids)."""
        import torch

        g = torch.Generator(device=self.b.device).manual_seed(seed)
        start = ctx.pos
        fed = [self.tok.bos, *(self.tok.encode(prefix) if prefix else [])]
        n_prefix = len(fed)
        hidden, cur = self._extend(ctx, self._text_split(fed, start), start + len(fed), cached)
        out: list[int] = []
        for _ in range(gcfg.max_new_tokens):
            with self._autocast():
                logits = self.model.logits(hidden[-1:]).float()[0, : self.tok.vocab_size]
            nxt = self._pick(logits, gcfg, g)
            if nxt == self.tok.eos:
                break
            out.append(nxt)
            if gcfg.stop and any(self.tok.decode(out).endswith(s) for s in gcfg.stop):
                break
            split = self._text_split([nxt], cur.pos)
            if cached:
                hidden, cur = self._extend(cur, split, cur.pos + 1, True)
            else:  # the whole text split so far, re-read with the whole context
                fed.append(nxt)
                hidden, _ = self._forward(ctx, self._text_split(fed, start), cached=False)
                cur = Context((), cur.pos + 1, cur.splits, cur.length + 1)
        fed_all = [self.tok.bos, *fed[1:n_prefix], *out, self.tok.eos]
        if cached:
            _, cur = self._extend(cur, self._text_split([self.tok.eos], cur.pos), cur.pos + 1, True)
        else:
            cur = Context((), start + len(fed_all), ctx.splits + (self._text_split(fed_all, start),),
                          ctx.length + len(fed_all))
        return self.tok.decode(out), cur, out

    def text_ce(self, ctx: Context, text: str, cached: bool = True):
        """Per-token cross-entropy (n + 1,) of ``text`` read as a whole segment after ``ctx`` (its tokens and
        the closing <|im_end|>), the teacher-forced view of what ``generate_text`` would write."""
        import torch.nn.functional as F

        ids = [self.tok.bos, *self.tok.encode(text), self.tok.eos]
        hidden, _ = self._forward(ctx, self._text_split(ids, ctx.pos), cached)
        with self._autocast():
            logits = self.model.logits(hidden[:-1]).float()
        return F.cross_entropy(logits, self._tensor(ids[1:]), reduction="none")

    @staticmethod
    def _pick(logits, gcfg: TextGenConfig, g) -> int:
        import torch

        if gcfg.temperature <= 0:
            return int(logits.argmax())
        logits = logits / gcfg.temperature
        if gcfg.top_k:
            kth = torch.topk(logits, min(gcfg.top_k, logits.shape[0])).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        return int(torch.multinomial(torch.softmax(logits, -1), 1, generator=g))

    # -- images ------------------------------------------------------------------------------------

    def _velocity(self, ctx: Context, x, t: float, hw, pos: int):
        inner = self._latent_embed(x, t, hw)
        hidden, _ = self._forward(ctx, self._image_split(inner, LATENT, pos))
        with self._autocast():
            return self.model.velocity(hidden[1:-1]).float()

    def generate_image(self, ctx: Context, width: int, height: int, gcfg: ImageGenConfig = ImageGenConfig(),
                       seed: int = 0, cfg_text_ctx: Context | None = None, cfg_img_ctx: Context | None = None):
        """An image (3, h, w) in [-1, 1] (on the CPU), h and w fitted to the model's generation size."""
        import torch

        from .mot import shift_timesteps, unpatchify

        gcfg.check()
        w, h = self.gen_size(width, height)
        f, p, C = self.cfg.latent_downsample, self.cfg.latent_patch, self.cfg.latent_channels
        hw = (h // f // p, w // f // p)
        g = torch.Generator(device=self.b.device).manual_seed(seed)
        x = torch.randn(hw[0] * hw[1], C * p * p, generator=g, device=self.b.device)
        ts = shift_timesteps(torch.linspace(1.0, 0.0, gcfg.steps + 1, dtype=torch.float64), gcfg.timestep_shift)
        lo, hi = gcfg.cfg_interval
        with torch.no_grad():
            for i in range(gcfg.steps):
                t, dt = float(ts[i]), float(ts[i] - ts[i + 1])
                v = self._velocity(ctx, x, t, hw, ctx.pos)
                in_interval = lo < t <= hi
                s_text = gcfg.cfg_text_scale if in_interval and cfg_text_ctx is not None else 1.0
                s_img = gcfg.cfg_img_scale if in_interval and cfg_img_ctx is not None else 1.0
                v_text = self._velocity(cfg_text_ctx, x, t, hw, cfg_text_ctx.pos) if s_text != 1.0 else None
                v_img = self._velocity(cfg_img_ctx, x, t, hw, cfg_img_ctx.pos) if s_img != 1.0 else None
                v = apply_cfg(v, v_text, v_img, s_text, s_img, gcfg.cfg_renorm_type, gcfg.cfg_renorm_min)
                x = x - v * dt
        z = unpatchify(x, p, C, hw[0] * p, hw[1] * p)
        with torch.no_grad():
            img = self.b.ae.decode(z.unsqueeze(0).float()).squeeze(0)
        return img.clamp(-1, 1).cpu()

    # -- the bundled flows -------------------------------------------------------------------------

    def interleave(self, items: list, think: bool = False, image_out: bool = True, size: tuple[int, int] | None = None,
                   text_cfg: TextGenConfig = TextGenConfig(), image_cfg: ImageGenConfig = ImageGenConfig(),
                   max_think_tokens: int = 200, seed: int = 0) -> dict:
        """BAGEL's ``interleave_inference``: returns {"text": str or None, "think": str or None, "image": PIL or
        None}. Output size: ``size``, else the last input image's, else the model's largest square."""
        if think:
            items = [GEN_THINK_SYSTEM if image_out else "", *items]
            items = [i for i in items if i != ""]
        full, cfg_text, cfg_img = self.build_contexts(items, images_vae=image_out)
        out: dict = {"text": None, "think": None, "image": None}
        if think:
            tcfg = dataclasses.replace(text_cfg, max_new_tokens=max_think_tokens, stop=("</think>",))
            body, full, _ = self.generate_text(full, tcfg, seed=seed, prefix="<think>")
            # as BAGEL: the guidance contexts stay without the plan, so guidance pushes towards prompt and plan
            out["think"] = "<think>" + body + ("" if body.endswith("</think>") else " </think>")
        if not image_out:
            out["text"] = self.generate_text(full, text_cfg, seed=seed)[0] if not think else out["think"]
            return out
        if size is None:
            last = [i for i in items if not isinstance(i, str)]
            size = _image_size(last[-1][0] if isinstance(last[-1], tuple) else last[-1]) if last else (
                self.cfg.gen_max_side, self.cfg.gen_max_side)
        img = self.generate_image(full, size[0], size[1], image_cfg, seed=seed, cfg_text_ctx=cfg_text,
                                  cfg_img_ctx=cfg_img)
        out["image"] = to_pil(img)
        return out


def apply_cfg(v, v_text, v_img, s_text: float, s_img: float, renorm: str, renorm_min: float):
    """Combine conditional and unconditional velocities (n, C) as BAGEL's ``_forward_flow`` does."""
    import torch

    if v_text is None and v_img is None:
        return v
    if renorm == "text_channel":
        if v_text is not None:
            vt = v_text + s_text * (v - v_text)
            scale = (v.norm(dim=-1, keepdim=True) / (vt.norm(dim=-1, keepdim=True) + 1e-8)).clamp(renorm_min, 1.0)
            vt = vt * scale
        else:
            vt = v
        return v_img + s_img * (vt - v_img) if v_img is not None else vt
    vt = v_text + s_text * (v - v_text) if v_text is not None else v
    out = v_img + s_img * (vt - v_img) if v_img is not None else vt
    if renorm == "global":
        scale = torch.clamp(v.norm() / (out.norm() + 1e-8), renorm_min, 1.0)
    else:
        scale = (v.norm(dim=-1, keepdim=True) / (out.norm(dim=-1, keepdim=True) + 1e-8)).clamp(renorm_min, 1.0)
    return out * scale


def to_pil(img):
    """(3, h, w) in [-1, 1] -> PIL RGB image."""
    import numpy as np
    from PIL import Image

    arr = ((img.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(arr), "RGB")


def _image_size(image) -> tuple[int, int]:
    if isinstance(image, (bytes, bytearray)):
        from PIL import Image

        with Image.open(io.BytesIO(image)) as im:
            return im.size
    return image.size


# ------------------------------------------------------------------------------------------------- CLI


def configure(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="run folder written by braid train")
    parser.add_argument("--image", action="append", default=[], help="an input image (repeatable), before the prompt")
    parser.add_argument("--prompt", required=True, help="the text after the images")
    parser.add_argument("--think", action="store_true", help="write a <think> plan first, then the image")
    parser.add_argument("--out", required=True,
                        help="output file: .png/.jpg/.webp generates an image, anything else generates text")
    parser.add_argument("--size", default=None, help="output image WxH (default: last input image, else the "
                                                      "model's largest square)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--shift", type=float, default=3.0, help="timestep shift")
    parser.add_argument("--cfg-text", type=float, default=4.0)
    parser.add_argument("--cfg-img", type=float, default=None, help="default 1.0, or 2.0 with input images")
    parser.add_argument("--cfg-interval", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                        help="default 0.4 1.0, or 0.0 1.0 with input images")
    parser.add_argument("--cfg-renorm", choices=RENORM_TYPES, default=None,
                        help="default global, or text_channel with input images")
    parser.add_argument("--cfg-renorm-min", type=float, default=0.0)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", choices=("auto", "ema", "model"), default="auto")
    parser.add_argument("--device", default=None)


def run(args) -> int:
    try:
        return _run(args)
    except InferError as e:
        print(f"braid infer: error: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from PIL import Image, UnidentifiedImageError

    out = Path(args.out)
    image_out = out.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp")
    size = None
    if args.size:
        try:
            w, h = (int(v) for v in args.size.lower().split("x"))
            size = (w, h)
        except ValueError:
            raise InferError(f"--size {args.size!r} is not WxH") from None
    images = []
    for p in args.image:
        try:
            data = Path(p).read_bytes()
            with Image.open(io.BytesIO(data)) as im:
                im.verify()
            images.append(data)
        except (OSError, UnidentifiedImageError, SyntaxError) as e:
            raise InferError(f"--image {p} is not a readable image ({e})") from None
    editing = bool(images)  # BAGEL's editing defaults when images come in
    icfg = ImageGenConfig(steps=args.steps, timestep_shift=args.shift, cfg_text_scale=args.cfg_text,
                          cfg_img_scale=args.cfg_img if args.cfg_img is not None else (2.0 if editing else 1.0),
                          cfg_interval=tuple(args.cfg_interval or ((0.0, 1.0) if editing else (0.4, 1.0))),
                          cfg_renorm_type=args.cfg_renorm or ("text_channel" if editing else "global"),
                          cfg_renorm_min=args.cfg_renorm_min)
    icfg.check()
    bundle = load_run(args.checkpoint, args.device, args.weights)
    inf = Inferencer(bundle)
    tcfg = TextGenConfig(max_new_tokens=args.max_tokens, temperature=args.temperature)
    res = inf.interleave([*images, args.prompt], think=args.think, image_out=image_out, size=size, text_cfg=tcfg,
                         image_cfg=icfg, max_think_tokens=args.max_tokens, seed=args.seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    if image_out:
        res["image"].save(out)
        if res["think"] is not None:
            out.with_suffix(".think.txt").write_text(res["think"] + "\n", encoding="utf-8")
            print(res["think"])
        print(f"wrote {out} ({res['image'].width}x{res['image'].height})")
    else:
        out.write_text(res["text"] + "\n", encoding="utf-8")
        print(res["text"])
    return 0

