"""The model stage: a one-sentence caption per kept image, summaries of long text, an optional topic review.

All requests of a batch go to the captioner in one ``caption()`` call (prompts image_caption@v1,
summarize@v1, topic_label@v1). Text between two images is first joined into one segment, since BAGEL's
300-token rule is about the text between images. A failed or empty caption drops its image (recorded);
a failed summary keeps the original text, flagged.
"""

from __future__ import annotations

from pathlib import Path

from captioners.base import CaptionRequest
from pipelines.core.stage import drop

from pipelines.web_interleave.filters import count_tokens
from pipelines.web_interleave.relevance import context_around
from pipelines.web_interleave.stages import count_check, drop_image
from pipelines.web_interleave.topic import doc_text, label_requests, parse_label

CAPTION_PROMPT, SUMMARY_PROMPT, TOPIC_PROMPT = "image_caption@v1", "summarize@v1", "topic_label@v1"


def make_caption_state(cfg):
    from captioners import make_captioner

    cache = str(Path(cfg.run.out_dir) / "cache") if cfg.captioner.cache else None
    return make_captioner(cfg.captioner, cache)


def build_segments(doc: dict) -> list[dict]:
    """Live items with consecutive text blocks joined (``pos`` becomes the list of original positions)."""
    segs: list[dict] = []
    for it in doc["items"]:
        if it["type"] == "image":
            if not it.get("dropped"):
                segs.append(it)
        elif segs and segs[-1]["type"] == "text":
            segs[-1]["text"] += "\n" + it["text"]
            segs[-1]["pos"].append(it["pos"])
        else:
            segs.append({"type": "text", "text": it["text"], "pos": [it["pos"]]})
    return segs


def caption_docs(batch: list[dict], cfg, captioner) -> list[dict]:
    requests: list[CaptionRequest] = []
    targets: list[tuple[str, dict, dict]] = []  # (what, record, segment)
    for rec in batch:
        doc = rec["doc"]
        doc["segments"] = segs = build_segments(doc)
        for i, s in enumerate(segs):
            if s["type"] == "image":
                ctx = context_around(segs, i, cfg.filters.relevance_window)
                s["context"] = ctx
                requests.append(CaptionRequest(prompt_id=CAPTION_PROMPT, images=(s["data"],), max_tokens=60,
                                               variables={"context": ctx, "text": ctx, "alt": s.get("alt", ""),
                                                          "title": doc.get("title", "")}))
                targets.append(("caption", rec, s))
            else:
                s["tokens"] = count_tokens(s["text"])
                if s["tokens"] > cfg.text.max_tokens:
                    s["long"] = True
                    if cfg.text.summarize:
                        requests.append(CaptionRequest(
                            prompt_id=SUMMARY_PROMPT, max_tokens=cfg.text.max_tokens,
                            variables={"text": s["text"], "max_tokens": cfg.text.max_tokens,
                                       "max_words": int(cfg.text.max_tokens * 0.75)}))
                        targets.append(("summary", rec, s))
        if cfg.topic.llm_review:
            requests.extend(label_requests([doc_text(doc)]))
            targets.append(("review", rec, {}))
    results = captioner.caption(requests) if requests else []
    info = {"backend": getattr(captioner, "backend", "?"), "model": getattr(captioner, "model", "?")}
    reviews: dict[int, str | None] = {}
    for (what, rec, seg), res in zip(targets, results):
        rec["captioner_info"] = info
        text = (res.text or "").strip()
        if what == "caption":
            if res.status == "error" or not text:
                drop_image(rec["doc"], seg, "caption", "caption_error" if res.status == "error" else "caption_empty",
                           {"error": (res.error or "")[:200]})
            else:
                seg.update(caption=_one_sentence(text), caption_status=res.status)
        elif what == "summary":
            if res.status == "ok" and text:
                seg.update(summary=text, summary_tokens=count_tokens(text))
            else:
                seg["summary_error"] = res.error or res.status
        else:
            reviews[id(rec)] = parse_label(text) if res.status != "error" else None
    out = []
    for rec in batch:
        rec.setdefault("captioner_info", info)
        doc = rec["doc"]
        doc["segments"] = [s for s in doc["segments"] if not s.get("dropped")]
        if id(rec) in reviews:
            label = reviews[id(rec)]
            doc["topic"]["llm_label"] = label
            if label is not None and label not in cfg.topic.keep_labels:
                out.append(drop(rec, "caption", "off_topic_llm", {**doc["topic"]}))
                continue
        out.append(count_check(rec, cfg, "caption"))
    return out


def _one_sentence(text: str) -> str:
    """The first line of the model's answer, without list markers or quotes around it."""
    line = next((ln for ln in text.splitlines() if ln.strip()), text).strip()
    return line.lstrip("-*• ").strip().strip('"').strip()
