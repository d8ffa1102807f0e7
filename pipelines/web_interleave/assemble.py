"""Stage 6, assemble: caption-context relevance, the final image count, and caption-first assembly into a
``web`` Sample.

Layout (BAGEL, Fig. 4b): original text in its order (role ``body``, loss on), and for each image its
caption directly before it (role ``caption``, loss on, prompt id recorded) followed by the image, which
is both an understanding input and a generation target. Each segment records its original position(s).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from pipelines.core.stage import fail
from pipelines.core.thumbs import THUMB
from pipelines.web_interleave.doc import TextBlock, WebDoc, count_check, log_entry, revise, with_doc
from pipelines.web_interleave.relevance import relevance
from schemas import CaptionerInfo, ImageSegment, Sample, SampleError, Source, TextSegment, make_key, validate

STAGE = "assemble"


def _scored(doc: WebDoc, scores: list[float], fc) -> WebDoc:
    kept, dropped = {}, []
    for img, score in zip(doc.images, scores):
        img = replace(img, scores={**img.scores, "relevance": score})
        if fc.min_relevance is not None and score < fc.min_relevance:
            dropped.append(log_entry(img, STAGE, "irrelevant", {"relevance": score, "min_relevance": fc.min_relevance}))
        else:
            kept[img.pos] = img
    return revise(doc, kept, dropped)


def _truncated(doc: WebDoc, max_images: int) -> WebDoc:
    """The document cut right before its image number ``max_images + 1``."""
    over = doc.images[max_images:]
    if not over:
        return doc
    cut = doc.items.index(over[0])
    doc = revise(doc, dropped=[log_entry(img, STAGE, "over_max_images", {"max_images": max_images}) for img in over])
    return replace(doc, items=doc.items[:cut])


def assemble_docs(batch: list[dict], cfg) -> list[dict]:
    fc = cfg.filters
    images = [img for rec in batch for img in rec["doc"].images]
    scores = iter(relevance([img.caption for img in images], [img.context for img in images]))
    out = []
    for rec in batch:
        doc = _scored(rec["doc"], [next(scores) for _ in rec["doc"].images], fc)
        rec = count_check(with_doc(rec, doc), cfg, STAGE, final=True)
        if rec["status"] != "ok":
            out.append(rec)
            continue
        if fc.over_max == "truncate":
            doc = _truncated(doc, fc.max_images)
        try:
            sample = build_sample(rec, doc, cfg)
            validate(sample)
        except SampleError as e:
            out.append(fail(rec, STAGE, "invalid_sample", str(e)))
            continue
        # the sample holds what is written; the document's bytes need not travel twice
        out.append({"id": rec["id"], "input": rec["input"], "status": "ok", "sample": sample,
                    "images": list(doc.image_log)})  # the manifest explains every image the page had
    return out


def _segments(doc: WebDoc, cfg) -> tuple[list, set[str]]:
    cc = cfg.caption
    segs: list = []
    prompts = {cc.caption_prompt_id}
    for it in doc.items:
        if isinstance(it, TextBlock):
            meta = {"pos": list(it.pos), "tokens": it.tokens}
            text = it.text
            if it.summary:
                prompts.add(cc.summary_prompt_id)
                meta.update(summarized=True, prompt_id=cc.summary_prompt_id, original_tokens=it.tokens)
                text = it.summary
            elif it.long:
                meta.update(long=True, summary_error=it.summary_error or "summarize off")
            segs.append(TextSegment(text, role="body", loss=True, meta=meta))
            continue
        segs.append(TextSegment(it.caption, role="caption", loss=True, prompt_id=cc.caption_prompt_id,
                                status=it.caption_status or "ok", meta={"pos": it.pos}))
        segs.append(ImageSegment(
            data=it.data, ext=it.ext, width=it.width, height=it.height, understanding=True, generation=True,
            role="image", sha256=it.sha256,
            provenance={"url": it.src[:2000], "pos": it.pos, "alt": it.alt, "fetch": _stable(it.fetch),
                        "scores": it.scores}))
    return segs, prompts


def _stable(fetch: dict | None) -> dict | None:
    """What the fetch says about the image, without timings: a re-run writes the same sample bytes."""
    return {k: v for k, v in fetch.items() if k != "elapsed_s"} if fetch else fetch


def build_sample(rec: dict, doc: WebDoc, cfg) -> Sample:
    segs, prompts = _segments(doc, cfg)
    info = rec.get("captioner") or {}
    meta = {
        "doc_id": doc.doc_id,
        "title": doc.title,
        "format": doc.format,
        "topic": doc.topic,
        "images_kept": len(doc.images),
        "images_dropped": dict(Counter(e["reason"] for e in doc.image_log)),
        "image_log": [{k: v for k, v in e.items() if k != THUMB} for e in doc.image_log],
        "trimmed_blocks": doc.trimmed_blocks,
    }
    if doc.extract:
        meta["extract"] = doc.extract
    extra = {"doc_id": doc.doc_id, "input": doc.source}
    if doc.row is not None:
        extra["row"] = doc.row
    return Sample(
        key=make_key(doc.url, doc.doc_id, rec["input"], "" if doc.row is None else doc.row),
        kind="web",
        segments=tuple(segs),
        source=Source(uri=doc.url, position=doc.row, extra=extra),
        captioner=CaptionerInfo(info.get("backend", "?"), info.get("model", "?"), tuple(sorted(prompts))),
        meta=meta,
    )
