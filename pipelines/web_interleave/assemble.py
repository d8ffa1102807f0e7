"""Caption-context relevance, the final image count, and caption-first assembly into a ``web`` Sample.

Layout (BAGEL, Fig. 4b): original text in its order (role ``body``, loss on), and for each image its
caption directly before it (role ``caption``, loss on, prompt id recorded) followed by the image, which
is both an understanding input and a generation target. Each segment records its original position(s).
"""

from __future__ import annotations

from collections import Counter

from pipelines.core.stage import fail
from schemas import CaptionerInfo, ImageSegment, Sample, SampleError, Source, TextSegment, make_key, validate

from pipelines.web_interleave.caption import CAPTION_PROMPT, SUMMARY_PROMPT
from pipelines.web_interleave.relevance import relevance
from pipelines.web_interleave.stages import count_check, drop_image


def assemble_docs(batch: list[dict], cfg) -> list[dict]:
    fc = cfg.filters
    pairs = [(rec, s) for rec in batch for s in rec["doc"]["segments"] if s["type"] == "image"]
    scores = relevance([s["caption"] for _, s in pairs], [s.get("context", "") for _, s in pairs])
    for (rec, s), score in zip(pairs, scores):
        s.setdefault("scores", {})["relevance"] = score
        if fc.min_relevance is not None and score < fc.min_relevance:
            drop_image(rec["doc"], s, "assemble", "irrelevant", {"relevance": score, "min_relevance": fc.min_relevance})
    out = []
    for rec in batch:
        doc = rec["doc"]
        doc["segments"] = [s for s in doc["segments"] if not s.get("dropped")]
        rec = count_check(rec, cfg, "assemble", final=True)
        if rec["status"] != "ok":
            out.append(rec)
            continue
        if fc.over_max == "truncate":
            _truncate(doc, fc.max_images)
        try:
            rec["sample"] = build_sample(rec, cfg)
            validate(rec["sample"])
        except SampleError as e:
            out.append(fail(rec, "assemble", "invalid_sample", str(e)))
            continue
        rec.pop("doc", None)  # the sample holds what is written; the bytes need not travel twice
        out.append(rec)
    return out


def _truncate(doc: dict, max_images: int) -> None:
    n, cut = 0, len(doc["segments"])
    for i, s in enumerate(doc["segments"]):
        if s["type"] == "image":
            n += 1
            if n > max_images:
                cut = i
                break
    for s in doc["segments"][cut:]:
        if s["type"] == "image":
            drop_image(doc, s, "assemble", "over_max_images", {"max_images": max_images})
    doc["segments"] = doc["segments"][:cut]


def build_sample(rec: dict, cfg) -> Sample:
    doc = rec["doc"]
    segs: list = []
    prompts = {CAPTION_PROMPT}
    for s in doc["segments"]:
        if s["type"] == "text":
            meta = {"pos": s["pos"], "tokens": s["tokens"]}
            text = s["text"]
            if s.get("summary"):
                prompts.add(SUMMARY_PROMPT)
                meta.update(summarized=True, prompt_id=SUMMARY_PROMPT, original_tokens=s["tokens"])
                text = s["summary"]
            elif s.get("long"):
                meta.update(long=True, summary_error=s.get("summary_error", "summarize off"))
            segs.append(TextSegment(text, role="body", loss=True, meta=meta))
            continue
        segs.append(TextSegment(s["caption"], role="caption", loss=True, prompt_id=CAPTION_PROMPT,
                                status=s.get("caption_status", "ok"), meta={"pos": s["pos"]}))
        segs.append(ImageSegment(
            data=s["data"], ext=s["ext"], width=s["width"], height=s["height"], understanding=True, generation=True,
            role="image", sha256=s.get("sha256", ""),
            provenance={"url": s["src"][:2000], "pos": s["pos"], "alt": s.get("alt", ""), "fetch": s.get("fetch", {}),
                        "scores": s.get("scores", {})}))
    info = rec.get("captioner_info") or {}
    topic = doc.get("topic", {})
    log = doc.get("image_log", [])
    meta = {
        "doc_id": doc["doc_id"],
        "title": doc.get("title", ""),
        "format": doc["format"],
        "topic": topic,
        "images_kept": sum(1 for s in doc["segments"] if s["type"] == "image"),
        "images_dropped": dict(Counter(e["reason"] for e in log)),
        "image_log": log,
        **doc.get("meta", {}),
    }
    if doc.get("extract"):
        meta["extract"] = doc["extract"]
    extra = {"doc_id": doc["doc_id"], "input": rec.get("source", "")}
    if "row" in doc:
        extra["row"] = doc["row"]
    return Sample(
        key=make_key(doc["url"], doc["doc_id"], rec["input"], doc.get("row", "")),
        kind="web",
        segments=tuple(segs),
        source=Source(uri=doc["url"], position=doc.get("row"), extra=extra),
        captioner=CaptionerInfo(info.get("backend", "?"), info.get("model", "?"), tuple(sorted(prompts))),
        meta=meta,
    )
