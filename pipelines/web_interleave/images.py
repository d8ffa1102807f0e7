"""Stage 4, image filters: clarity, duplicates (in the document, then across the run), then OCR text density,
cheapest first; each dropped image is logged with the score that decided."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

from pipelines.web_interleave import filters as F
from pipelines.web_interleave.doc import WebImage, count_check, log_entry, revise, with_doc

STAGE = "images"


@dataclass
class ImageState:
    """Per worker: the OCR engine (None when OCR is off) and the run's duplicate index."""

    ocr: object | None
    dedup: F.DedupIndex

    def close(self) -> None:
        self.dedup.close()


def make_image_state(cfg) -> ImageState:
    from pipelines.web_interleave.ocr import OcrCounter

    persist = Path(cfg.run.out_dir) / "dedup" if cfg.filters.dedup_across_run else None
    return ImageState(OcrCounter() if cfg.filters.max_ocr_tokens is not None else None,
                      F.DedupIndex(cfg.filters.phash_distance, persist))


def _judge(img: WebImage, doc_key: str, seen: list[tuple[str, int]], fc, state: ImageState):
    """(the image with its scores, None) when it stays, else (None, its log entry)."""
    gray = F.load_gray(img.data)
    sc = {**img.scores, "clarity": round(F.clarity(gray), 2)}
    if sc["clarity"] < fc.min_clarity:
        return None, log_entry(img, STAGE, "blurry", {"clarity": sc["clarity"], "min_clarity": fc.min_clarity})
    sha, ph = hashlib.sha256(img.data).hexdigest(), F.phash(gray)
    sc["phash"] = f"{ph:016x}"
    reason, dup = F.within_doc_duplicate(sha, ph, seen, fc.phash_distance)
    if reason is None and fc.dedup_across_run:
        reason, dup = state.dedup.lookup(sha, ph, doc_key)
    if reason:
        return None, log_entry(img, STAGE, reason, dup)
    if state.ocr is not None:
        sc["ocr_tokens"] = state.ocr.count(img.data, limit=fc.max_ocr_tokens)
        if sc["ocr_tokens"] > fc.max_ocr_tokens:
            return None, log_entry(img, STAGE, "text_heavy",
                                   {"ocr_tokens": sc["ocr_tokens"], "max_ocr_tokens": fc.max_ocr_tokens})
    return replace(img, scores=sc, sha256=sha), None


def filter_images(batch: list[dict], cfg, state: ImageState) -> list[dict]:
    fc = cfg.filters
    out = []
    for rec in batch:
        doc = rec["doc"]
        kept: dict[int, WebImage] = {}
        dropped: list[dict] = []
        seen: list[tuple[str, int]] = []
        for img in doc.images:
            new, entry = _judge(img, doc.doc_id, seen, fc, state)
            if new is None:
                dropped.append(entry)
            else:
                kept[img.pos] = new
                seen.append((new.sha256, int(new.scores["phash"], 16)))
        rec = count_check(with_doc(rec, revise(doc, kept, dropped)), cfg, STAGE)
        if rec["status"] == "ok" and fc.dedup_across_run:
            for img in kept.values():
                state.dedup.add(img.sha256, int(img.scores["phash"], 16), doc.doc_id)
        out.append(rec)
    return out
