"""Stage 5, caption: a one-sentence caption per kept image, summaries of long text, an optional topic review.

All requests of a batch go to the captioner in one ``caption()`` call (the prompts named in the ``caption``
section). Text between two images is first joined into one block, since BAGEL's 300-token rule is about
the text between images. A failed or empty caption drops its image (logged); a failed summary keeps the
original text, flagged. The record gains ``captioner`` (backend, model).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from captioners.base import CaptionRequest, is_transient
from pipelines.core.sections import CACHE_DIR
from pipelines.core.stage import drop, fail
from pipelines.web_interleave.doc import TextBlock, WebDoc, WebImage, count_check, log_entry, revise
from pipelines.web_interleave.filters import count_tokens
from pipelines.web_interleave.relevance import context_around

STAGE = "caption"


def open_captioner(cfg):
    """The stage's setup step: the configured captioner, with the request cache under ``<out>/cache``."""
    from captioners import make_captioner

    return make_captioner(cfg.captioner, str(Path(cfg.run.out_dir) / CACHE_DIR) if cfg.captioner.cache else None)


def join_text(doc: WebDoc) -> WebDoc:
    """Consecutive text blocks joined into one (its ``pos`` covers all of theirs), with its token count."""
    items: list = []
    for it in doc.items:
        if isinstance(it, TextBlock) and items and isinstance(items[-1], TextBlock):
            items[-1] = replace(items[-1], text=items[-1].text + "\n" + it.text, pos=items[-1].pos + it.pos)
        else:
            items.append(it)
    return replace(doc, items=tuple(replace(it, tokens=count_tokens(it.text)) if isinstance(it, TextBlock) else it
                                    for it in items))


@dataclass
class _Asks:
    requests: list
    targets: list  # (what, record index, position of the item in its document)


def _requests(docs: list[WebDoc], cfg) -> _Asks:
    from pipelines.web_interleave.topic import doc_text, label_requests

    cc, asks = cfg.caption, _Asks([], [])
    for k, doc in enumerate(docs):
        plain = [{"type": "text", "text": it.text} if isinstance(it, TextBlock) else {"type": "image"}
                 for it in doc.items]
        for i, it in enumerate(doc.items):
            if isinstance(it, WebImage):
                ctx = context_around(plain, i, cfg.filters.relevance_window)
                asks.requests.append(CaptionRequest(
                    prompt_id=cc.caption_prompt_id, images=(it.data,), max_tokens=cc.caption_max_tokens,
                    variables={"context": ctx, "text": ctx, "alt": it.alt, "title": doc.title}))
                asks.targets.append(("caption", k, i, ctx))
            elif it.tokens > cfg.text.max_tokens and cfg.text.summarize:
                asks.requests.append(CaptionRequest(
                    prompt_id=cc.summary_prompt_id, max_tokens=cfg.text.max_tokens,
                    variables={"text": it.text, "max_tokens": cfg.text.max_tokens,
                               "max_words": int(cfg.text.max_tokens * 0.75)}))
                asks.targets.append(("summary", k, i, None))
        if cfg.topic.llm_review:
            asks.requests.extend(replace(q, prompt_id=cc.review_prompt_id) for q in label_requests([doc_text(doc.plain())]))
            asks.targets.append(("review", k, None, None))
    return asks


def _answered(doc: WebDoc, answers: list[tuple], cfg) -> tuple[WebDoc, str | None]:
    """The document with its captions and summaries, and the reviewer's label (None without one)."""
    from pipelines.web_interleave.topic import parse_label

    items, dropped, label = list(doc.items), [], None
    for what, i, ctx, res in answers:
        text = (res.text or "").strip()
        if what == "caption":
            if res.status == "error" or not text:
                reason = "caption_error" if res.status == "error" else "caption_empty"
                dropped.append(log_entry(items[i], STAGE, reason, {"error": (res.error or "")[:200]}))
            else:
                items[i] = replace(items[i], caption=_one_sentence(text), caption_status=res.status, context=ctx)
        elif what == "summary":
            if res.status == "ok" and text:
                items[i] = replace(items[i], summary=text, summary_tokens=count_tokens(text))
            else:
                items[i] = replace(items[i], summary_error=res.error or res.status)
        else:
            label = parse_label(text) if res.status != "error" else None
    items = [replace(it, long=it.tokens > cfg.text.max_tokens) if isinstance(it, TextBlock) else it for it in items]
    return revise(replace(doc, items=tuple(items)), dropped=dropped), label


def caption_docs(batch: list[dict], cfg, captioner) -> list[dict]:
    docs = [join_text(r["doc"]) for r in batch]
    asks = _requests(docs, cfg)
    results = captioner.caption(asks.requests) if asks.requests else []
    if len(results) != len(asks.requests):
        raise RuntimeError(f"captioner returned {len(results)} results for {len(asks.requests)} requests")
    per: list[list[tuple]] = [[] for _ in batch]
    for (what, k, i, ctx), res in zip(asks.targets, results):
        per[k].append((what, i, ctx, res))
    who = {"backend": getattr(captioner, "backend", "?"), "model": getattr(captioner, "model", "?")}
    out = []
    for rec, doc, answers in zip(batch, docs, per):
        down = [a[3] for a in answers if is_transient(a[3])]
        if down:  # the server, not the page: the document fails retryably and a later run captions it
            out.append(fail(rec, STAGE, "captioner_error",
                            f"{len(down)} of {len(answers)} caption requests failed: {down[0].error}"))
            continue
        doc, label = _answered(doc, answers, cfg)
        if any(a[0] == "review" for a in answers):
            doc = replace(doc, topic={**doc.topic, "llm_label": label})
        rec = {**rec, "doc": doc, "captioner": who}
        if label is not None and label not in cfg.topic.keep_labels:
            out.append(drop(rec, STAGE, "off_topic_llm", {**doc.topic}))
        else:
            out.append(count_check(rec, cfg, STAGE))
    return out


def _one_sentence(text: str) -> str:
    """The first line of the model's answer, without list markers or quotes around it."""
    line = next((ln for ln in text.splitlines() if ln.strip()), text).strip()
    return line.lstrip("-*• ").strip().strip('"').strip()

