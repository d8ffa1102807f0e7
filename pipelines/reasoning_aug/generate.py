"""Stage 2, caption (generation): each unit's generator steps, one batched captioner call per step across the batch.

A step's reply is checked (``checks.py``) and parsed by the step; a rejected reply ends the unit ``filtered``
(the model's text in ``detail``), a captioner error ends it ``failed``. Units are never changed in place: each
accepted reply gives a new unit with the parsed outputs (``out``) and the accepted text (``texts``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from captioners.prompts import get_prompt
from pipelines.core.stage import drop, fail
from pipelines.reasoning_aug.checks import Rejection, check_text, clean_text
from pipelines.reasoning_aug.generators import BY_NAME


@dataclass(frozen=True)
class GenerateSettings:
    """The generate stage's configuration; ``factory`` (tests, embedding) replaces ``make_captioner``."""

    cfg: object
    cache_dir: str | None = None
    factory: Callable[[], object] | None = None


def open_captioner(settings: GenerateSettings):
    """The stage's setup step: the captioner, built once per worker."""
    if settings.factory is not None:
        return settings.factory()
    from captioners import make_captioner

    return make_captioner(settings.cfg.captioner, settings.cache_dir if settings.cfg.captioner.cache else None)


def _decide(step, unit: dict, req, result, cfg) -> dict:
    """The unit after one model reply: a new unit that goes on, or a terminal record."""
    stage = f"{unit['gen']}.{step.name}"
    if result.status == "error":
        return fail(unit, stage, "captioner_error", f"{stage}: {result.error or 'the captioner returned an error'}")
    text = clean_text(result.text or "")
    rej = check_text(text, get_prompt(req.prompt_id).max_tokens, result.output_tokens, result.status == "truncated",
                     cfg.limits)
    if rej and not step.prose and rej.reason in ("repetition", "no_words", "stray_markup"):
        rej = None  # short replies ("2 -> 4", "ACCEPT: ...") are judged by their parser
    got = rej or step.accept(unit, text, cfg)
    if isinstance(got, Rejection):
        return drop(unit, stage, got.reason, {**got.scores, "prompt_id": req.prompt_id}, detail=result.text)
    said = {"text": text, "status": result.status, "prompt_id": req.prompt_id, "tokens": result.output_tokens}
    return {**unit, "out": {**unit["out"], **got}, "texts": {**unit["texts"], step.name: said}}


def generate(batch: list[dict], settings: GenerateSettings, captioner) -> list[dict]:
    cfg = settings.cfg
    who = {"backend": getattr(captioner, "backend", "?"), "model": getattr(captioner, "model", "?")}
    units = [{**r, "captioner": who} for r in batch]
    for s in range(max(len(BY_NAME[u["gen"]].STEPS) for u in units)):
        asked = []  # (unit index, step, request)
        for i, u in enumerate(units):
            steps = BY_NAME[u["gen"]].STEPS if u["status"] == "ok" else ()
            if s < len(steps):
                req = steps[s].request(u, cfg)
                if req is not None:
                    asked.append((i, steps[s], req))
        if not asked:
            continue
        results = captioner.caption([req for _, _, req in asked])
        if len(results) != len(asked):
            raise RuntimeError(f"the captioner returned {len(results)} results for {len(asked)} requests")
        for (i, step, req), result in zip(asked, results):
            units[i] = _decide(step, units[i], req, result, cfg)
    return units
