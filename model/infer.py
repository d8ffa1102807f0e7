"""Inference with a trained MoT: text generation over a KV-cached context, think mode, BAGEL's interleaved flow
and the ``braid infer`` command.

The parts live by role: ``model.run_folder`` loads a run folder into a Bundle, ``model.context`` reads text and
images into immutable KV-cached contexts, ``model.sampler`` draws images with the rectified-flow Euler sampler
under classifier-free guidance. ``Inferencer`` joins them. Text generation opens a segment (``<|im_start|>``
and an optional prefix), extends the cache one token at a time until ``<|im_end|>``, a stop string or the
token limit, then closes the segment. Think mode opens the context with the reasoning samples' system prompt
and writes a ``<think>`` plan before the image; the guidance contexts leave the plan out, as BAGEL's do.
"""

from __future__ import annotations

import dataclasses
import io
import sys
from dataclasses import dataclass
from pathlib import Path

from model.context import Context, ContextBuilder, image_size
from model.mot import LATENT
from model.run_folder import InferError, load_run
from model.sampler import RENORM_TYPES, ImageGenConfig, sample_image, to_pil

# The system prompt of Braid's reasoning samples (captioners.prompts_reasoning.THINK_SYSTEM, which model/
# may not import); think mode opens the context with it, as the training samples do.
GEN_THINK_SYSTEM = (
    "Plan before you draw. First reason about what the image has to show, inside <think> </think> tags, "
    "then produce the image. Answer in the form: <think> your plan </think> image."
)


@dataclass(frozen=True)
class TextGenConfig:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = the whole vocabulary
    stop: tuple[str, ...] = ()  # stop strings besides <|im_end|> (e.g. "</think>")


class Inferencer(ContextBuilder):
    """Context building and generation over one loaded bundle (batch size 1, as BAGEL's inferencer)."""

    graphs: bool | None = None  # decode steps as CUDA graphs; None: on the GPU

    def __init__(self, bundle):
        super().__init__(bundle)
        self._decoders: dict = {}  # capacity -> StaticDecoder (its CUDA graph is captured once)

    # -- text --------------------------------------------------------------------------------------

    def generate_text(self, ctx: Context, gcfg: TextGenConfig = TextGenConfig(), seed: int = 0,
                      cached: bool = True, prefix: str = "") -> tuple[str, Context, list[int]]:
        """Open a text segment (and ``prefix``), generate until <|im_end|>, a stop string or the token limit,
        then close the segment. Returns (text without prefix, context after the closed segment, ids).

        Cached, the tokens are decoded over a static KV cache (``model.decode``; a CUDA graph per step on the
        GPU); uncached, the whole text split so far is re-read with the whole context at every token."""
        import torch

        g = torch.Generator(device=self.b.device).manual_seed(seed)
        start = ctx.pos
        fed = [self.tok.bos, *(self.tok.encode(prefix) if prefix else [])]
        hidden, cur = self._extend(ctx, self._text_split(fed, start), start + len(fed), cached)
        dec = None
        if cached:
            dec = self._decoder(cur.length + gcfg.max_new_tokens + 1)
            dec.load(cur.kvs)
        with self._autocast():
            logits = self.model.logits(hidden[-1:]).float()[0]
        out: list[int] = []
        for _ in range(gcfg.max_new_tokens):
            nxt = self._pick(logits[: self.tok.vocab_size], gcfg, g)
            if nxt == self.tok.eos:
                break
            out.append(nxt)
            if gcfg.stop and any(self.tok.decode(out).endswith(s) for s in gcfg.stop):
                break
            fed.append(nxt)
            if dec is not None:
                logits = dec.step(nxt, start + len(fed) - 1)
            else:  # the whole text split so far, re-read with the whole context
                hidden, _ = self._forward(ctx, self._text_split(fed, start), cached=False)
                with self._autocast():
                    logits = self.model.logits(hidden[-1:]).float()[0]
        fed.append(self.tok.eos)
        if dec is not None:
            dec.step(self.tok.eos, start + len(fed) - 1)
        done = Context(tuple(dec.kvs()) if dec is not None else (), start + len(fed),
                       ctx.splits + (self._text_split(fed, start),), ctx.length + len(fed))
        return self.tok.decode(out), done, out

    def _decoder(self, n: int):
        """A static-cache decoder of at least ``n`` slots, kept per capacity (its CUDA graph is captured once)."""
        from model.decode import StaticDecoder, capacity_for

        cap = capacity_for(n)
        if cap not in self._decoders:
            self._decoders.clear()  # one cache at a time: a 7B-shaped model's cache is not small
            self._decoders[cap] = StaticDecoder(self.model, cap, self._autocast, self.graphs)
        return self._decoders[cap]

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

    def generate_image(self, ctx: Context, width: int, height: int,
                       gcfg: ImageGenConfig = ImageGenConfig(),  # noqa: B008 - a frozen dataclass
                       seed: int = 0, cfg_text_ctx: Context | None = None, cfg_img_ctx: Context | None = None):
        """An image (3, h, w) in [-1, 1] (on the CPU), h and w fitted to the model's generation size."""
        return sample_image(self, ctx, width, height, gcfg, seed, cfg_text_ctx, cfg_img_ctx)

    # -- the bundled flows -------------------------------------------------------------------------

    def interleave(self, items: list, think: bool = False, image_out: bool = True, size: tuple[int, int] | None = None,
                   text_cfg: TextGenConfig = TextGenConfig(),
                   image_cfg: ImageGenConfig = ImageGenConfig(),  # noqa: B008 - a frozen dataclass
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
            size = image_size(last[-1][0] if isinstance(last[-1], tuple) else last[-1]) if last else (
                self.cfg.gen_max_side, self.cfg.gen_max_side)
        img = self.generate_image(full, size[0], size[1], image_cfg, seed=seed, cfg_text_ctx=cfg_text,
                                  cfg_img_ctx=cfg_img)
        out["image"] = to_pil(img)
        return out

# ------------------------------------------------------------------------------------------------- CLI


def configure(parser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="run folder written by braid train, or a BAGEL checkpoint folder (greedy answers about "
                             "one image or a text prompt, and text-to-image with BAGEL's recipe)")
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
    from model.bagel_load import is_bagel_folder

    if is_bagel_folder(args.checkpoint):
        return _run_bagel(args, images, out, image_out, size)
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


def _run_bagel(args, images: list[bytes], out: Path, image_out: bool, size) -> int:
    """``braid infer`` with a BAGEL checkpoint folder: BAGEL's greedy answer to the prompt (about the one --image,
    if given), or the image BAGEL draws from the prompt with its text-to-image recipe (``model.bagel_spot``)."""
    from model.bagel_generate import greedy_text
    from model.bagel_score import load_bagel_bundle
    from model.bagel_spot import answer_text, caption_image, regenerate_image

    if args.think:
        raise InferError("--think needs a braid train run folder: with a BAGEL checkpoint Braid answers and draws "
                         "without a plan")
    if args.temperature > 0:
        raise InferError("a BAGEL checkpoint decodes greedily here: leave --temperature at 0")
    if len(images) > 1 or (images and image_out):
        raise InferError("with a BAGEL checkpoint, give at most one --image, and only for a text answer "
                         "(editing needs a braid train run folder)")
    try:
        bundle = load_bagel_bundle(args.checkpoint, args.device, args.weights)
    except ValueError as e:
        raise InferError(str(e)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if image_out:
            w, h = size or (1024, 1024)  # BAGEL's text-to-image default size
            out.write_bytes(regenerate_image(bundle, args.prompt, w, h, steps=args.steps, seed=args.seed))
            from PIL import Image

            with Image.open(out) as im:
                print(f"wrote {out} ({im.width}x{im.height})")
            return 0
        if images:
            text = caption_image(bundle, images[0], args.prompt, args.max_tokens)
        else:
            tok = bundle.tok
            text = answer_text(tok, greedy_text(bundle.model, tok.encode(args.prompt), tok.bos, tok.eos,
                                                args.max_tokens + 1))
    except ValueError as e:  # a checkpoint without the part asked for (no ViT, no generation)
        raise InferError(str(e)) from None
    out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0
