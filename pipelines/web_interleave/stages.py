"""The CPU stages of ``braid web``: read, topic, fetch, image filters. Each is a plain function over a batch.

A document record carries ``doc`` (see readers.py). Images stay in ``doc["items"]``; one that a rule
drops gets ``dropped`` set and an entry in ``doc["image_log"]`` (source, position, stage, reason, scores,
fetch outcome), so every image's fate is recorded: in the sample's metadata when the document is
written, in the manifest's ``scores`` when it is filtered.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pipelines.core.stage import drop, fail, split

from pipelines.web_interleave import filters as F
from pipelines.web_interleave.readers import InputError, html_document, read_rows, row_document


def live_images(doc: dict) -> list[dict]:
    return [it for it in doc["items"] if it["type"] == "image" and not it.get("dropped")]


def drop_image(doc: dict, item: dict, stage: str, reason: str, scores: dict | None = None, fetch: dict | None = None):
    item["dropped"] = True
    item.pop("data", None)
    entry = {"src": item["src"][:300], "pos": item["pos"], "stage": stage, "reason": reason}
    if scores:
        entry["scores"] = scores
    if fetch:
        entry["fetch"] = fetch
    doc.setdefault("image_log", []).append(entry)


def count_check(rec: dict, cfg, stage: str, final: bool = False) -> dict:
    """The record, or a ``filtered`` one when too few images remain (and, at the end, too many)."""
    doc = rec["doc"]
    reason, scores = F.image_count_rule(len(live_images(doc)), cfg.filters)
    if reason is None or (reason == "too_many_images" and not final):
        return rec
    scores["dropped"] = dict(Counter(e["reason"] for e in doc.get("image_log", [])))
    detail = "; ".join(f"{e['src'][:80]}: {e['reason']}" for e in doc.get("image_log", [])[:20]) or None
    return drop(rec, stage, reason, scores, detail)


def prepare(doc: dict, cfg) -> dict:
    """Short text blocks out, header/footer trimmed, UI images (URL patterns) dropped before any fetch."""
    items = [it for it in doc["items"] if it["type"] == "image" or len(it["text"].strip()) >= cfg.text.min_chars]
    items, trimmed = F.trim_ends(items, cfg.filters)
    doc["items"] = items
    doc.setdefault("meta", {})["trimmed_blocks"] = trimmed
    for it in items:
        if it["type"] == "image":
            reason, scores = F.url_rule(it["src"], cfg.filters.url_patterns, it.get("alt", "") if cfg.filters.match_alt else "")
            if reason:
                drop_image(doc, it, "read", reason, scores)
    return doc


# ---------------------------------------------------------------- read


def read_docs(batch: list[dict], cfg, fetcher) -> list[dict]:
    """Input records to document records: a page stays one record, a file of documents is split per row."""
    out: list[dict] = []
    for rec in batch:
        src = rec["source"]
        if rec["kind"] == "table":
            try:
                rows = read_rows(src)
            except (OSError, ValueError) as e:
                out.append(fail(rec, "read", "unreadable_file", f"{src}: {type(e).__name__}: {e}"))
                continue
            parts = []
            for i, row in enumerate(rows):
                try:
                    doc = prepare(row_document(row, src, i), cfg)
                    doc["row"] = i
                    parts.append({"doc": doc, "source": src})
                except (InputError, ValueError, TypeError) as e:
                    parts.append({"status": "failed", "stage": "read", "error_kind": "bad_row", "message": str(e)})
            out.extend(_checked(p, cfg) if p.get("status", "ok") == "ok" else p for p in split(rec, parts))
            continue
        if rec["kind"] == "url":
            res = fetcher.fetch([src], kind="page")[0]
            if not res.ok:
                out.append(fail(rec, "read", res.outcome, f"{src}: {res.detail}"))
                continue
            data, url = res.data, res.final_url or src
        else:
            path = Path(src)
            if path.stat().st_size > cfg.fetch.max_page_bytes:
                out.append(fail(rec, "read", "too_large", f"{src} is over {cfg.fetch.max_page_bytes} bytes"))
                continue
            data, url = path.read_bytes(), path.as_uri()
        try:
            doc = html_document(data, url, rec.get("local_root"))
        except (ValueError, TypeError) as e:  # lxml's ParserError is a ValueError
            out.append(fail(rec, "read", "bad_html", f"{src}: {e}"))
            continue
        out.append(_checked({**rec, "doc": prepare(doc, cfg)}, cfg))
    return out


def _checked(rec: dict, cfg) -> dict:
    if rec.get("status") != "ok":
        return rec
    return count_check(rec, cfg, "read")


# ---------------------------------------------------------------- topic


def classify_topics(batch: list[dict], cfg, clf) -> list[dict]:
    from pipelines.web_interleave.topic import classify, doc_text

    results = classify([doc_text(r["doc"]) for r in batch], clf, cfg.topic.keep_labels)
    out = []
    for rec, res in zip(batch, results):
        rec["doc"]["topic"] = res
        if cfg.topic.min_score is not None and res["score"] < cfg.topic.min_score:
            out.append(drop(rec, "topic", "off_topic", {**res, "min_score": cfg.topic.min_score}))
        else:
            out.append(rec)
    return out


# ---------------------------------------------------------------- fetch


def fetch_images(batch: list[dict], cfg, fetcher) -> list[dict]:
    """Fetch and decode every live image (one concurrent batch per local root); size and aspect rules."""
    groups: dict[str | None, list[tuple[dict, dict]]] = {}
    for rec in batch:
        for it in live_images(rec["doc"]):
            groups.setdefault(rec["doc"].get("local_root"), []).append((rec["doc"], it))
    for root, pairs in groups.items():
        results = fetcher.fetch([it["src"] for _, it in pairs], kind="image", local_root=root)
        for (doc, it), res in zip(pairs, results):
            if not res.ok:
                drop_image(doc, it, "fetch", res.outcome, fetch=res.record())
                continue
            reason, scores = F.size_rule(res.width, res.height, cfg.filters)
            if reason:
                drop_image(doc, it, "fetch", reason, scores, fetch=res.record())
                continue
            it.update(data=res.data, ext=res.ext, width=res.width, height=res.height, fetch=res.record(),
                      scores=scores)
    return [count_check(rec, cfg, "fetch") for rec in batch]


# ---------------------------------------------------------------- image filters


@dataclass
class ImageState:
    ocr: object | None
    dedup: F.DedupIndex

    def close(self) -> None:
        self.dedup.close()


def make_image_state(cfg) -> ImageState:
    from pipelines.web_interleave.ocr import OcrCounter

    persist = Path(cfg.run.out_dir) / "dedup" if cfg.filters.dedup_across_run else None
    return ImageState(OcrCounter() if cfg.filters.max_ocr_tokens is not None else None,
                      F.DedupIndex(cfg.filters.phash_distance, persist))


def filter_images(batch: list[dict], cfg, state: ImageState) -> list[dict]:
    """Clarity, duplicates (in the document, then across the run), then OCR text density: cheapest first."""
    fc = cfg.filters
    out = []
    for rec in batch:
        doc = rec["doc"]
        doc_key = doc["doc_id"]
        kept: list[tuple[str, int]] = []
        for it in live_images(doc):
            gray = F.load_gray(it["data"])
            sc = it.setdefault("scores", {})
            sc["clarity"] = round(F.clarity(gray), 2)
            if sc["clarity"] < fc.min_clarity:
                drop_image(doc, it, "images", "blurry", {"clarity": sc["clarity"], "min_clarity": fc.min_clarity})
                continue
            sha, ph = hashlib.sha256(it["data"]).hexdigest(), F.phash(gray)
            sc["phash"] = f"{ph:016x}"
            reason, dup = F.within_doc_duplicate(sha, ph, kept, fc.phash_distance)
            if reason is None and fc.dedup_across_run:
                reason, dup = state.dedup.lookup(sha, ph, doc_key)
            if reason:
                drop_image(doc, it, "images", reason, dup)
                continue
            if state.ocr is not None:
                sc["ocr_tokens"] = state.ocr.count(it["data"], limit=fc.max_ocr_tokens)
                if sc["ocr_tokens"] > fc.max_ocr_tokens:
                    drop_image(doc, it, "images", "text_heavy",
                               {"ocr_tokens": sc["ocr_tokens"], "max_ocr_tokens": fc.max_ocr_tokens})
                    continue
            kept.append((sha, ph))
            it["sha256"] = sha
        rec = count_check(rec, cfg, "images")
        if rec["status"] == "ok" and fc.dedup_across_run:
            for it in live_images(doc):
                state.dedup.add(it["sha256"], int(it["scores"]["phash"], 16), doc_key)
        out.append(rec)
    return out
