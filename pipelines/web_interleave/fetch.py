"""Stage 3, fetch: every live image fetched and decoded through the guarded fetcher (one concurrent batch per
local root), then BAGEL's size and aspect rules; a document left with too few images ends ``filtered``."""

from __future__ import annotations

from dataclasses import replace

from pipelines.web_interleave import filters as F
from pipelines.web_interleave.doc import count_check, log_entry, revise, with_doc

STAGE = "fetch"


def fetch_images(batch: list[dict], cfg, fetcher) -> list[dict]:
    groups: dict[str | None, list[tuple[int, object]]] = {}
    for k, rec in enumerate(batch):
        for img in rec["doc"].images:
            groups.setdefault(rec["doc"].local_root, []).append((k, img))
    kept: list[dict] = [{} for _ in batch]
    dropped: list[list[dict]] = [[] for _ in batch]
    for root, pairs in groups.items():
        results = fetcher.fetch([img.src for _, img in pairs], kind="image", local_root=root)
        for (k, img), res in zip(pairs, results):
            if not res.ok:
                dropped[k].append(log_entry(img, STAGE, res.outcome, fetch=res.record()))
                continue
            reason, scores = F.size_rule(res.width, res.height, cfg.filters)
            if reason:
                dropped[k].append(log_entry(img, STAGE, reason, scores, fetch=res.record(), data=res.data))
                continue
            kept[k][img.pos] = replace(img, data=res.data, ext=res.ext, width=res.width, height=res.height,
                                       fetch=res.record(), scores=scores)
    return [count_check(with_doc(rec, revise(rec["doc"], kept[k], dropped[k])), cfg, STAGE)
            for k, rec in enumerate(batch)]
