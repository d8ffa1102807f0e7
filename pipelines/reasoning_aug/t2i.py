"""Text-to-image with reasoning: an image with its caption -> query, ``<think>`` guidance + refined prompt, image.

Sample: system (no loss), query (no loss), ``<think> guidance. The refined prompt is: ... </think>``
(loss), image (generation target). Sources: caption-first web images (the caption right before the
image), image-caption pairs, and video frames (no caption; the nearby change captions are context).
"""

from __future__ import annotations

from pipelines.reasoning_aug.checks import Rejection, check_parts, check_text, parse_labeled
from pipelines.reasoning_aug.common import Step, as_target, ask, build_sample, model_segment, think, with_provenance
from pipelines.reasoning_aug.readers import SourceRecord
from schemas import ImageSegment, TextSegment

KIND = "reasoning_t2i"
SOURCE_KINDS = ("web", "pair", "video")


def _caption_for(segs: tuple, i: int, kind: str) -> str:
    """The caption of image ``i``: the caption-first text before it, or (pairs) a caption after it."""
    before = segs[i - 1] if i > 0 else None
    after = segs[i + 1] if i + 1 < len(segs) else None
    for seg in (before, after) if kind == "pair" else (before,):
        if isinstance(seg, TextSegment) and seg.role == "caption":
            return seg.text.strip()
    return ""


def candidates(src: SourceRecord, cfg) -> list[dict] | Rejection:
    if src.kind not in SOURCE_KINDS or src.sample is None:
        return Rejection("not_applicable", f"t2i works from {', '.join(SOURCE_KINDS)} samples, not {src.kind}")
    segs = src.sample.segments
    out, n = [], -1
    for i, seg in enumerate(segs):
        if not isinstance(seg, ImageSegment):
            continue
        n += 1
        if min(seg.width, seg.height) < cfg.t2i.min_side:
            continue
        context = " ".join(s.text for s in segs[max(0, i - 2): i + 3]
                           if isinstance(s, TextSegment) and s.role in ("change", "body", "subtitle"))
        out.append({"image": with_provenance(seg, {"key": src.key}, n), "caption": _caption_for(segs, i, src.kind),
                    "context": context[:600], "image_index": n})
    if not out:
        return Rejection("no_candidates", f"no image with a side of at least {cfg.t2i.min_side} px")
    return out


def _note(payload: dict) -> str:
    if payload["caption"]:
        return f" (its caption: \"{payload['caption']}\")"
    if payload["context"]:
        return f" (a video frame; nearby narration: \"{payload['context'][:300]}\")"
    return ""


def _request_query(unit: dict, cfg):
    p = unit["payload"]
    return ask(cfg.caption.t2i_query_prompt_id, {"caption_note": _note(p)}, (p["image"].data,), cfg, cfg.limits.budget_slack)


def _accept_query(unit: dict, text: str, cfg) -> dict | Rejection:
    if "\n" in text.strip():
        text = text.strip().splitlines()[0]
    return {"query": text.strip()}


def _request_trace(unit: dict, cfg):
    p = unit["payload"]
    return ask(cfg.caption.t2i_trace_prompt_id, {"query": unit["out"]["query"], "caption_note": _note(p)}, (p["image"].data,), cfg,
               cfg.limits.budget_slack)


def _accept_trace(unit: dict, text: str, cfg) -> dict | Rejection:
    parts = parse_labeled(text, ("Guidance", "Refined prompt"))
    rej = check_parts(parts, ("Guidance", "Refined prompt"))
    if rej:
        return rej
    for name in ("Guidance", "Refined prompt"):
        rej = check_text(parts[name], budget=10_000, limits=cfg.limits)
        if rej:
            return Rejection(rej.reason, f"{name}: {rej.message}", rej.scores)
    return {"guidance": parts["Guidance"], "refined": parts["Refined prompt"]}


STEPS = (Step("query", _request_query, _accept_query), Step("trace", _request_trace, _accept_trace))


def assemble(unit: dict, cfg):
    out, p = unit["out"], unit["payload"]
    guidance = out["guidance"].rstrip()
    if guidance[-1] not in ".!?":
        guidance += "."
    trace = think(f"{guidance} The refined prompt is: {out['refined']}")
    segments = [
        model_segment(unit, "query", role="query", loss=False, text=out["query"]),
        model_segment(unit, "trace", role="think", loss=True, text=trace),
        as_target(p["image"]),
    ]
    return build_sample(unit, KIND, segments, {"caption": p["caption"], "image_index": p["image_index"]})
