"""The web pipeline's records: a document (``WebDoc``) and its items (``TextBlock``, ``WebImage``), all frozen.

A document record is ``{"id", "input", "status", "doc": WebDoc}``; a stage returns a new record with a new
``WebDoc`` (``dataclasses.replace``) and never changes the one it was given, so a batch that is retried
record by record sees the same inputs again. An image a rule drops leaves ``items`` and gets an entry in
``image_log`` (source, position, stage, reason, scores, fetch outcome): every image's fate is recorded, in
the sample's metadata when the document is written, in the manifest's ``scores`` when it is filtered.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

from pipelines.core.stage import drop
from pipelines.core.thumbs import THUMB, jpeg_thumb
from pipelines.web_interleave import filters as F


@dataclass(frozen=True)
class TextBlock:
    """Text in reading order. ``pos``: the original positions it covers (several once blocks are joined).

    tokens / long / summary / summary_tokens / summary_error: set by the caption stage (BAGEL's 300-token rule).
    """

    text: str
    pos: tuple[int, ...]
    tag: str = "p"
    tokens: int = 0
    long: bool = False
    summary: str = ""
    summary_tokens: int = 0
    summary_error: str = ""


@dataclass(frozen=True)
class WebImage:
    """An image at its original position ``pos``; the fetch stage adds the bytes and their measurements, the
    image filters ``scores`` and ``sha256``, the caption stage ``caption`` and the ``context`` it was given."""

    src: str
    pos: int
    alt: str = ""
    title: str = ""
    data: bytes | None = None
    ext: str = ""
    width: int = 0
    height: int = 0
    fetch: dict = field(default_factory=dict)
    sha256: str = ""
    scores: dict = field(default_factory=dict)
    caption: str = ""
    caption_status: str = ""
    context: str = ""


@dataclass(frozen=True)
class WebDoc:
    """One document, whatever it came from (an HTML page, a row of a file of documents).

    doc_id: the source's own id (OmniCorpus ``general_metadata.id``), else the URL or file and row.
    url: the page URL (or ``file://`` path). format: ``html``, ``omnicorpus``, ``obelics`` or ``mmc4``.
    local_root: folder local images may come from (HTML files only). source: the input file or URL.
    row: the row in a file of documents. extract: how an HTML page's content was found.
    topic: the topic classifier's (and reviewer's) verdict. trimmed_blocks: header/footer blocks removed.
    """

    doc_id: str
    url: str
    format: str
    items: tuple[TextBlock | WebImage, ...]
    title: str = ""
    local_root: str | None = None
    source: str = ""
    row: int | None = None
    extract: str | None = None
    topic: dict = field(default_factory=dict)
    image_log: tuple[dict, ...] = ()
    trimmed_blocks: int = 0

    @property
    def images(self) -> list[WebImage]:
        return [it for it in self.items if isinstance(it, WebImage)]

    def plain(self) -> dict:
        """The document as the plain mapping ``topic.doc_text`` reads (title, typed items)."""
        return {"title": self.title, "items": [{"type": "text", "text": it.text} if isinstance(it, TextBlock)
                                               else {"type": "image", "src": it.src} for it in self.items]}


def from_items(raw: dict) -> WebDoc:
    """A ``WebDoc`` from a document as ``readers`` reads it (plain items with ``type`` and ``pos``)."""
    items = tuple(WebImage(it["src"], it["pos"], it.get("alt", ""), it.get("title", "")) if it["type"] == "image"
                  else TextBlock(it["text"], (it["pos"],), it.get("tag", "p")) for it in raw["items"])
    # images the page holds that extraction did not keep (outside_main, hidden, duplicate_url, ...): no position
    seen = tuple({"src": d["src"], "pos": None, "stage": "extract", "reason": d["reason"]} for d in raw.get("dropped", ()))
    return WebDoc(doc_id=raw["doc_id"], url=raw["url"], format=raw["format"], items=items, title=raw.get("title", ""),
                  local_root=raw.get("local_root"), extract=raw.get("extract"), image_log=seen)


def log_entry(img: WebImage, stage: str, reason: str, scores: dict | None = None, fetch: dict | None = None,
              data: bytes | None = None) -> dict:
    """How one image left the document; with its bytes (``img.data`` or ``data``) it carries a thumbnail that
    the sink keeps under ``OUT/dropped/`` for the viewer."""
    entry = {"src": img.src[:2000], "pos": img.pos, "stage": stage, "reason": reason}
    pixels = data or getattr(img, "data", None)
    if pixels:
        thumb = jpeg_thumb(pixels)
        if thumb:
            entry[THUMB] = thumb
    if scores:
        entry["scores"] = scores
    if fetch:
        entry["fetch"] = fetch
    return entry


def revise(doc: WebDoc, kept: dict[int, WebImage] | None = None, dropped: list[dict] = ()) -> WebDoc:
    """A new document: images replaced by position (``kept``), dropped ones (``log_entry`` values) removed and
    logged."""
    kept, gone = kept or {}, {e["pos"] for e in dropped}
    items = tuple(kept.get(it.pos, it) if isinstance(it, WebImage) else it for it in doc.items
                  if not (isinstance(it, WebImage) and it.pos in gone))
    return replace(doc, items=items, image_log=doc.image_log + tuple(dropped))


def with_doc(rec: dict, doc: WebDoc) -> dict:
    """A new record holding ``doc``."""
    return {**rec, "doc": doc}


def count_check(rec: dict, cfg, stage: str, final: bool = False) -> dict:
    """The record, or a ``filtered`` one when too few images remain (and, at the end, too many)."""
    doc = rec["doc"]
    reason, scores = F.image_count_rule(len(doc.images), cfg.filters)
    if reason is None or (reason == "too_many_images" and not final):
        return rec
    scores["dropped"] = dict(Counter(e["reason"] for e in doc.image_log))
    detail = (f"{len(doc.image_log)} image(s) dropped: " + ", ".join(f"{k} {v}" for k, v in scores["dropped"].items())
              if doc.image_log else None)
    return {**drop(rec, stage, reason, scores, detail), "images": list(doc.image_log)}  # each image, whole
