"""Stage 1, read: an input becomes document records; header/footer trimmed, UI images and images over
``filters.max_images_considered`` dropped before any fetch.

An HTML page (a file, or an http(s) URL fetched through the guarded fetcher) stays one record; a file of
documents (JSONL, JSON, Parquet) becomes a ``split`` record with one part per document, so each document
has its own outcome in the manifest. A document with too few images left ends ``filtered`` here.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pipelines.core.stage import fail, split
from pipelines.web_interleave import filters as F
from pipelines.web_interleave.doc import TextBlock, WebDoc, WebImage, count_check, from_items, log_entry, revise
from pipelines.web_interleave.readers import InputError, html_document, read_rows, row_document

STAGE = "read"


def prepare(doc: WebDoc, cfg) -> WebDoc:
    """UI images (URL patterns) dropped, short text blocks out, header/footer trimmed, images over the cap dropped.

    UI images go first, so a footer that holds one (a donation logo after "Contributor(s)") is still a footer.
    """
    fc = cfg.filters
    dropped = []
    for img in doc.images:
        reason, scores = F.url_rule(img.src, fc.url_patterns, img.alt if fc.match_alt else "")
        if reason:
            dropped.append(log_entry(img, STAGE, reason, scores))
    doc = revise(doc, dropped=dropped)
    items = [it for it in doc.items if isinstance(it, WebImage) or len(it.text.strip()) >= cfg.text.min_chars]
    kept, trimmed = F.trim_ends([_plain(it) for it in items], fc)
    keep = {id(p["item"]) for p in kept}
    doc = replace(doc, items=tuple(it for it in items if id(it) in keep), trimmed_blocks=trimmed)
    over = doc.images[fc.max_images_considered:]
    return revise(doc, dropped=[log_entry(img, STAGE, "over_image_cap", {"max_images_considered": fc.max_images_considered})
                                for img in over])


def _plain(it: TextBlock | WebImage) -> dict:
    if isinstance(it, TextBlock):
        return {"type": "text", "text": it.text, "item": it}
    return {"type": "image", "src": it.src, "item": it}


def _table_parts(rec: dict, cfg) -> list[dict]:
    src = rec["source"]
    try:
        rows = read_rows(src)
    except (OSError, ValueError) as e:
        return [fail(rec, STAGE, "unreadable_file", f"{src}: {type(e).__name__}: {e}")]
    parts = []
    for i, row in enumerate(rows):
        try:
            doc = replace(from_items(row_document(row, src, i)), row=i, source=src)
            parts.append({"doc": prepare(doc, cfg)})
        except (InputError, ValueError, TypeError) as e:
            parts.append({"status": "failed", "stage": STAGE, "error_kind": "bad_row", "message": str(e)})
    return [count_check(p, cfg, STAGE) if p["status"] == "ok" else p for p in split(rec, parts)]


def _page(rec: dict, cfg, fetcher) -> dict:
    src = rec["source"]
    if rec["kind"] == "url":
        res = fetcher.fetch([src], kind="page")[0]
        if not res.ok:
            return fail(rec, STAGE, res.outcome, f"{src}: {res.detail}")
        data, url = res.data, res.final_url or src
    elif rec["kind"] == "html":
        path = Path(src)
        if path.stat().st_size > cfg.fetch.max_page_bytes:
            return fail(rec, STAGE, "too_large", f"{src} is over {cfg.fetch.max_page_bytes} bytes")
        data, url = path.read_bytes(), path.as_uri()
    else:
        return fail(rec, STAGE, "unsupported_input", f"{src}: not an HTML page, http(s) URL or file of documents")
    try:
        doc = replace(from_items(html_document(data, url, rec.get("local_root"))), source=src)
    except (ValueError, TypeError) as e:  # lxml's ParserError is a ValueError
        return fail(rec, STAGE, "bad_html", f"{src}: {e}")
    return count_check({**rec, "doc": prepare(doc, cfg)}, cfg, STAGE)


def read_docs(batch: list[dict], cfg, fetcher) -> list[dict]:
    """Input records to document records (a page stays one record, a file of documents is split per row)."""
    out: list[dict] = []
    for rec in batch:
        if rec["kind"] == "table":
            out.extend(_table_parts(rec, cfg))
        else:
            out.append(_page(rec, cfg, fetcher))
    return out
