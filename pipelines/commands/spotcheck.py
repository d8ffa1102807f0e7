"""``braid spotcheck SHARDS... [--checkpoint DIR] --n N --out report.html [--seed S]``

One self-contained HTML report on a set of shards, for a look before anyone trains on them.

Always (one pass over every sample, ``pipelines.commands.spotcheck_stats``): structural statistics per sample kind
(image sizes, caption lengths, sequence lengths against the token budget, duplicate images and texts across
samples) and per-sample flags, the plots of ``pipelines.commands.spotcheck_plots`` (drop rates, filter scores with
their thresholds, caption lengths against prompt budgets, repeated n-grams, truncated texts; drops and thresholds
come from the run folder's manifest and runs.jsonl when the shards sit in one), plus N samples drawn at random
(seeded reservoir, as ``braid view``) and rendered as ``braid view`` renders them. Without a checkpoint the token
counts are estimates (about 4 bytes per token) under the geometry of ``--geometry``; with one they are exact under
its tokenizer and layout.

``--checkpoint`` is a ``braid train`` run folder or a BAGEL checkpoint folder (``pipelines.commands.score``'s
``load_checkpoint`` tells them apart). The drawn samples are scored as ``braid score`` scores them (mean CE per text
segment, velocity MSE per generation target, a sample score; ``model.score`` or ``model.bagel_score``), each
segment is coloured by its score among the drawn samples of its kind, the worst samples are ranked by robust
z-score within their kind and the score distributions are plotted per kind. Beside each image:

- a ``braid train`` run: the model's own caption (the text it writes after the sample's context up to that image)
  and, for every generation target, an image regenerated from the context before it (``--steps`` Euler steps,
  default 30);
- a BAGEL checkpoint (``model.bagel_spot``): BAGEL's caption of the image alone (its understanding flow: ViT tokens,
  then the named prompt ``CAPTION_PROMPT``, greedy, at most ``--caption-tokens``), and, for every image that
  follows some text (generation target or not), BAGEL's regeneration from all the sample's text before it joined
  by newlines, with BAGEL's text-to-image recipe (``--steps`` timesteps, default 50; text guidance 4 inside
  (0.4, 1], shift 3, global renormalisation) at the image's size fitted to BAGEL's geometry, seeded by
  ``--seed`` plus the segment index.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
from collections import defaultdict
from pathlib import Path

from pipelines.commands.html import details, esc, page, render_image, render_text, thumbnail_data_uri
from pipelines.commands.spotcheck_plots import RunQuality, quality_plots
from pipelines.commands.spotcheck_stats import Structure, plot_scores, plot_structure
from pipelines.commands.view import reservoir, run_dirs, shard_paths
from schemas import ImageSegment, SampleError, ShardError, TextSegment, decode_sample, iter_members

CSS = """
table.stats { border-collapse: collapse; background: #fff; margin: 0 0 18px; font-size: 13px; }
table.stats td, table.stats th { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
table.stats td:first-child, table.stats th:first-child { text-align: left; }
.scored { border-radius: 5px; padding: 2px 8px; margin: 6px 0; }
.score { font: 12px ui-monospace, monospace; color: #333; }
.beside { display: flex; gap: 14px; align-items: flex-start; }
.model { display: flex; gap: 14px; align-items: flex-start; margin: 4px 0 0 0; font-size: 13px; }
.model .caption { background: #eef3ff; border-left: 3px solid #6b8cff; padding: 3px 8px; max-width: 480px; }
.model img { border: 1px dashed #6b8cff; }
.flags { color: #a00; font-size: 13px; margin: 4px 0; }
.problems { background: #fff0f0; border: 1px solid #e0a0a0; padding: 8px 12px; margin-bottom: 18px; }
img.plot { max-width: 100%; background: #fff; border: 1px solid #ddd; margin: 0 0 18px; }
ol.worst li { margin: 2px 0; }
"""


class _ByteTokens:
    """A stand-in tokenizer for estimates without a checkpoint: about one token per 4 UTF-8 bytes."""

    bos = eos = vision_start = vision_end = pad = 0

    @staticmethod
    def encode(text: str) -> list[int]:
        return [0] * -(-len(text.encode("utf-8")) // 4)


# ------------------------------------------------------------------------------------------------ model


def model_outputs(bundle, sample, steps: int, caption_tokens: int, seed: int) -> tuple[dict, dict]:
    """({segment index: the model's caption after that image}, {segment index: regenerated PNG bytes}),
    walking the sample in its training layout."""
    from model.infer import Inferencer, TextGenConfig
    from model.sampler import ImageGenConfig, to_pil

    inf = Inferencer(bundle)
    captions, regen = {}, {}
    full = cfg_text = cfg_img = inf.new_context()
    last = len(sample.segments) - 1
    icfg = ImageGenConfig(steps=steps)
    for i, seg in enumerate(sample.segments):
        if isinstance(seg, TextSegment):
            cfg_text = full
            full = inf.add_text(full, seg.text)
            cfg_img = inf.add_text(cfg_img, seg.text)
            continue
        if seg.generation:
            img = inf.generate_image(full, seg.width, seg.height, icfg, seed=seed + i, cfg_text_ctx=cfg_text,
                                     cfg_img_ctx=cfg_img)
            buf = io.BytesIO()
            to_pil(img).save(buf, "PNG")
            regen[i] = buf.getvalue()
            if i == last:
                continue
        full = inf.add_image(full, seg.data, seg.width, seg.height, vae=seg.generation)
        cfg_text = full
        captions[i] = inf.generate_text(full, TextGenConfig(max_new_tokens=caption_tokens), seed=seed)[0]
    return captions, regen


def bagel_outputs(bundle, sample, steps: int, caption_tokens: int, seed: int) -> tuple[dict, dict]:
    """({segment index: BAGEL's caption of that image}, {segment index: BAGEL's regeneration, PNG bytes}) for a
    BAGEL checkpoint: every image is captioned alone (``model.bagel_spot.CAPTION_PROMPT``), and every image that
    follows some text, generation target or not, is drawn again from all the sample's text before it, joined by
    newlines, with BAGEL's text-to-image recipe (seed + segment index)."""
    from model.bagel_spot import caption_image, regenerate_image

    captions, regen, texts = {}, {}, []
    for i, seg in enumerate(sample.segments):
        if isinstance(seg, TextSegment):
            texts.append(seg.text)
            continue
        if bundle.cfg.vit is not None:
            try:
                captions[i] = caption_image(bundle, seg.data, max_tokens=caption_tokens)
            except (OSError, ValueError) as e:  # an image that does not decode
                captions[i] = f"(not captioned: {e})"
        if texts and bundle.cfg.visual_gen:
            regen[i] = regenerate_image(bundle, "\n".join(texts), seg.width, seg.height, steps, seed + i)
    return captions, regen


# --------------------------------------------------------------------------------------------- render


def _colour(p: float) -> str:
    """p in [0, 1], 0 = best: green through yellow to red."""
    return f"hsl({120 * (1 - p):.0f}, 70%, 88%)"


def _percentiles(scores) -> dict:
    """(kind, segment type) -> sorted values, over the drawn samples."""
    out: dict = defaultdict(list)
    for s in scores:
        for seg in s.segments:
            out[(s.kind, seg.kind)].append(seg.value)
    return {k: sorted(v) for k, v in out.items()}


def _rank(vals: list, v: float) -> float:
    if len(vals) < 2:
        return 0.5
    below = sum(x < v for x in vals)
    return below / (len(vals) - 1)


def render_scored(sample, shard: str, flags: list[str], score, pct: dict, captions: dict, regen: dict,
                  thumb: int, who: str = "model") -> str:
    """One drawn sample: each segment coloured by its score; beside each image the model's caption and its
    regeneration (``who`` names the model: "model" for a braid train run, "BAGEL")."""
    parts, n_img = [], 0
    for i, seg in enumerate(sample.segments):
        inner = render_image(seg, n_img, thumb) if isinstance(seg, ImageSegment) else render_text(seg)
        n_img += isinstance(seg, ImageSegment)
        sc = score.segment(i) if score else None
        style, label = "", ""
        if sc is not None:
            p = _rank(pct.get((sample.kind, sc.kind), []), sc.value)
            style = f' style="background:{_colour(p)}"'
            what = "CE/token" if sc.kind == "text" else "velocity MSE"
            label = f'<span class="score">{what} {sc.value:.3f} · {sc.n_tokens} tokens · rank {p:.0%}</span>'
        if i in captions or i in regen:
            cap = (f'<div class="caption"><b>{who} caption:</b> {esc(captions[i]) or "<i>(empty)</i>"}</div>'
                   if i in captions else "")
            img = ""
            if i in regen:
                uri = thumbnail_data_uri(regen[i], thumb)
                source = "the text" if who == "BAGEL" else "the context"
                img = (f'<figure><img src="{uri}" alt="regenerated image {i}"><figcaption>{who}\'s regeneration '
                       f"from {source} before it</figcaption></figure>")
            inner = f'<div class="beside">{inner}<div class="model">{cap}{img}</div></div>'
        parts.append(f'<div class="scored"{style}>{label}{inner}</div>')
    head_score = ""
    if score is not None:
        head_score = (f"<span>score {score.score:.3f} (z {score.z:+.2f} within {esc(sample.kind)})</span>"
                      if score.score is not None else f"<span>not scored: {esc(score.note)}</span>")
    flag_html = "".join(f'<div class="flags">⚑ {esc(f)}</div>' for f in flags)
    doc = sample.to_json()
    meta = {k: doc[k] for k in ("schema_version", "source", "captioner", "meta")}
    head = (f'<header><span class="key">{esc(sample.key)}</span><span class="badge">{esc(sample.kind)}</span>'
            f"<span>{esc(sample.source.uri)}</span><span>{esc(Path(shard).name)}</span>{head_score}</header>")
    return (f'<section class="sample" id="{esc(sample.key)}">{head}{flag_html}{"".join(parts)}'
            f"{details('metadata', meta)}</section>")


# ------------------------------------------------------------------------------------------------ command


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shards", nargs="+", help="shard files (.tar) or directories holding them")
    parser.add_argument("--out", required=True, help="the HTML report to write")
    parser.add_argument("--checkpoint", default=None, help="a braid train run folder or a BAGEL checkpoint folder; "
                        "without it, structure only")
    parser.add_argument("--n", type=int, default=20, help="how many random samples to show (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--geometry", default="base", choices=("tiny", "small", "base"),
                        help="model preset whose token budget and image sizes the estimates use without a "
                             "checkpoint (default base)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps per regenerated image (default 30; "
                        "with a BAGEL checkpoint BAGEL's 50 timesteps)")
    parser.add_argument("--caption-tokens", type=int, default=40, help="longest model caption in tokens")
    parser.add_argument("--worst", type=int, default=10, help="how many samples the worst list shows")
    parser.add_argument("--thumb", type=int, default=240, help="thumbnail size in pixels (longest side)")
    parser.add_argument("--device", default=None)


def run(args: argparse.Namespace) -> int:
    from schemas.config import ConfigError

    if args.n < 1 or (args.steps is not None and args.steps < 1) or args.thumb < 16:
        raise ConfigError("--n and --steps must be at least 1 and --thumb at least 16")
    paths = shard_paths(args.shards)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        raise ConfigError(f"no such shard: {missing[0]}" if missing
                          else "no .tar shards found in the given directories")
    bundle = score_many = None
    bagel = False
    if args.checkpoint:
        from model.bagel_score import BagelBundle
        from pipelines.commands.score import load_checkpoint

        bundle, score_many = load_checkpoint(args.checkpoint, args.device)
        bagel = isinstance(bundle, BagelBundle)
    if args.steps is None:
        args.steps = 50 if bagel else 30
    if bagel and args.steps < 2:
        raise ConfigError("--steps must be at least 2 with a BAGEL checkpoint (BAGEL's sampler counts timesteps)")
    if bagel:
        from model.bagel_spot import count_tokens

        tok, budget = bundle.tok, bundle.max_tokens

        def count(sample):
            return count_tokens(bundle, sample)
    else:
        from model.data import plan_sample
        from model.mot import MoTConfig
        from model.train import PRESET_DATA

        mcfg, dcfg, tok = ((bundle.mcfg, bundle.dcfg, bundle.tok) if bundle else
                           (MoTConfig.preset(args.geometry), PRESET_DATA[args.geometry], _ByteTokens()))
        budget = dcfg.max_tokens

        def count(sample):
            return plan_sample(sample, tok, mcfg, dcfg, None).n_tokens

    problems: list[str] = []
    st = Structure(count, budget)
    quality = RunQuality(tok)

    def samples():
        for p in paths:
            try:
                for key, members in iter_members(p):
                    try:
                        sample = decode_sample(key, members)
                    except SampleError as e:
                        problems.append(f"{p}: {e}")
                        continue
                    st.add(str(p), sample)
                    quality.add(sample)
                    yield str(p), sample
            except ShardError as e:
                problems.append(str(e))

    picked = reservoir(samples(), args.n, random.Random(args.seed))
    for run_dir in run_dirs(args.shards, paths):
        quality.add_run(run_dir)
    scores, outputs = {}, {}
    if bundle is not None:
        from model.score import DEFAULT_TIMESTEPS, rank_scores

        ranked = rank_scores(score_many(bundle, [s for _, s in picked], DEFAULT_TIMESTEPS, args.seed))
        scores = {s.key: s for s in ranked}
        outputs_of = bagel_outputs if bagel else model_outputs
        for _, s in picked:
            outputs[s.key] = outputs_of(bundle, s, args.steps, args.caption_tokens, args.seed)
    html = _report(args, paths, picked, st, problems, scores, outputs, bundle, quality, bagel)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)
    for p in problems:
        print(f"braid spotcheck: skipped: {p}", file=sys.stderr)
    n_total = sum(len(k["samples"]) for k in st.kinds.values())
    print(f"wrote {out}: {len(picked)} of {n_total} samples from {len(paths)} shard(s)"
          + (f", scored with {args.checkpoint}" if bundle else ", structure only")
          + (f"; {len(problems)} problem(s)" if problems else ""))
    if not picked:
        print("braid spotcheck: error: no readable samples in the given shards", file=sys.stderr)
        return 1
    return 0


def _report(args, paths, picked, st: Structure, problems, scores: dict, outputs: dict, bundle, quality,
            bagel: bool = False) -> str:
    n_total = sum(len(k["samples"]) for k in st.kinds.values())
    body = [st.table(exact=bundle is not None), plot_structure(st) if n_total else "",
            quality_plots(quality, estimated=bundle is None) if n_total else ""]
    if problems:
        body.append('<div class="problems"><b>Problems (skipped):</b><ul>'
                    + "".join(f"<li>{esc(p)}</li>" for p in problems) + "</ul></div>")
    shown = {s.key for _, s in picked}
    if scores:
        body.append("<h2>Scores</h2>" + plot_scores(list(scores.values())))
        worst = [s for s in scores.values() if s.score is not None][: args.worst]
        items = "".join(f'<li><a href="#{esc(s.key)}">{esc(s.key)}</a> · {esc(s.kind)} · score {s.score:.3f} · '
                        f"z {s.z:+.2f} · CE {_fmt(s.ce)} · MSE {_fmt(s.mse)}</li>" for s in worst)
        body.append(f'<h2>Worst samples (by z-score within kind)</h2><ol class="worst">{items}</ol>')
    flagged = sorted(((len(f), k) for k, f in st.flags.items() if f), key=lambda t: (-t[0], t[1]))[: args.worst]
    if flagged:
        def link(k):
            return f'<a href="#{esc(k)}">{esc(k)}</a>' if k in shown else esc(k)

        items = "".join(f"<li>{link(k)} ({esc(Path(st.where[k]).name)}): {esc('; '.join(st.flags[k]))}</li>"
                        for _, k in flagged)
        body.append(f'<h2>Samples with structural flags</h2><ol class="worst">{items}</ol>')
    pct = _percentiles(scores.values())
    body.append("<h2>Drawn samples</h2>")
    for shard, s in picked:
        caps, regen = outputs.get(s.key, ({}, {}))
        body.append(render_scored(s, shard, st.flags.get(s.key, []), scores.get(s.key), pct, caps, regen, args.thumb,
                                  who="BAGEL" if bagel else "model"))
    mode = f"scored with {args.checkpoint} ({bundle.weights})" if bundle else \
        f"structure only (token estimates under the {args.geometry} geometry)"
    if bagel:
        from model.bagel_spot import CAPTION_PROMPT, CAPTION_PROMPT_ID

        mode += (f"; BAGEL captions answer {CAPTION_PROMPT!r} ({CAPTION_PROMPT_ID}); regenerations use BAGEL's "
                 f"text-to-image recipe with {args.steps} timesteps")
    note = f"{len(picked)} random samples (seed {args.seed}) of {n_total} in {len(paths)} shard(s); {mode}"
    return page("Braid spot-check", "".join(body), note, css=CSS)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"
