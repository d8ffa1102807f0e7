"""Stage 6, caption: one change caption per consecutive frame pair, in batches through the configured captioner.

The stage holds a captioner built once per worker (``setup``); one ``caption`` call serves every pair of
every clip in the batch. A clip any of whose captions comes back ``error`` fails (a sequence with a
missing change caption teaches nothing); ``truncated`` captions are kept with that status.
Record keys added: ``changes`` (``{text, status, prompt_id}`` per pair) and ``captioner`` (backend, model).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from captioners.base import CaptionerConfig, CaptionRequest
from pipelines.core.stage import fail
from pipelines.video_interleave.config import VideoCaptionConfig

STAGE = "caption"


@dataclass(frozen=True)
class CaptionJob:
    """What the caption stage needs: the captioner, the stage settings, and where the request cache lives."""

    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)
    stage: VideoCaptionConfig = field(default_factory=VideoCaptionConfig)
    cache_dir: str | None = None


def open_captioner(job: CaptionJob):
    """The stage's setup step: build the configured captioner (once per worker)."""
    from captioners import make_captioner

    return make_captioner(job.captioner, job.cache_dir if job.captioner.cache else None)


def pair_requests(rec: dict, st: VideoCaptionConfig) -> list[CaptionRequest]:
    fr = rec["frames"]
    return [CaptionRequest(prompt_id=st.prompt_id, images=(fr[i]["data"], fr[i + 1]["data"]), max_tokens=st.max_tokens)
            for i in range(len(fr) - 1)]


def caption_pairs(batch: list[dict], job: CaptionJob, captioner) -> list[dict]:
    per = [pair_requests(r, job.stage) for r in batch]
    results = captioner.caption([q for qs in per for q in qs])
    if len(results) != sum(len(qs) for qs in per):
        raise RuntimeError(f"captioner returned {len(results)} results for {sum(len(q) for q in per)} requests")
    out, k = [], 0
    who = {"backend": captioner.backend, "model": captioner.model}
    for rec, qs in zip(batch, per):
        res = results[k : k + len(qs)]
        k += len(qs)
        errors = [r.error or "unknown error" for r in res if r.status == "error"]
        if errors:
            out.append(fail(rec, STAGE, "caption_error",
                            f"{len(errors)} of {len(res)} change captions failed: {errors[0]}"))
            continue
        changes = [{"text": r.text.strip(), "status": r.status, "prompt_id": job.stage.prompt_id} for r in res]
        out.append({**rec, "changes": changes, "captioner": who})
    return out
