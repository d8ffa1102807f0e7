"""Stage 2, topic: the fast topic classifier (MiniLM embeddings, ``topic.py``) scores every document; off-topic
documents end ``filtered`` with their scores."""

from __future__ import annotations

from dataclasses import replace

from pipelines.core.stage import drop
from pipelines.web_interleave.doc import with_doc


def classify_topics(batch: list[dict], cfg, clf) -> list[dict]:
    from pipelines.web_interleave.topic import classify, doc_text

    results = classify([doc_text(r["doc"].plain()) for r in batch], clf, cfg.topic.keep_labels)
    out = []
    for rec, res in zip(batch, results):
        rec = with_doc(rec, replace(rec["doc"], topic=res))
        if cfg.topic.min_score is not None and res["score"] < cfg.topic.min_score:
            out.append(drop(rec, "topic", "off_topic", {**res, "min_score": cfg.topic.min_score}))
        else:
            out.append(rec)
    return out
