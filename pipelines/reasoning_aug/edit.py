"""Free-form edits: (source, target) pairs -> instruction, a short ``<think>`` trace, the edited image.

Sample: system (no loss), source image (understanding input), instruction (no loss), ``<think> trace
</think>`` (loss; about 60 tokens: what changes, what stays), target image (generation target).
Pairs come from consecutive frames of a video sample (their change caption is turned into an
instruction by the model) and from edit tables (the instruction is given).
"""

from __future__ import annotations

from itertools import pairwise

from pipelines.reasoning_aug.checks import Rejection
from pipelines.reasoning_aug.common import (
    Step,
    as_input,
    as_target,
    ask,
    build_sample,
    choose,
    model_segment,
    think,
    with_provenance,
)
from pipelines.reasoning_aug.readers import SourceRecord
from schemas import ImageSegment, TextSegment

KIND = "reasoning_edit"


def _video_pairs(src: SourceRecord) -> list[dict]:
    segs = src.sample.segments
    idx = [i for i, s in enumerate(segs) if isinstance(s, ImageSegment)]
    out = []
    for n, (a, b) in enumerate(pairwise(idx)):
        change = " ".join(s.text.strip() for s in segs[a + 1: b] if isinstance(s, TextSegment) and s.role == "change")
        if change:
            out.append({"source": with_provenance(segs[a], {"key": src.key}, n),
                        "target": with_provenance(segs[b], {"key": src.key}, n + 1),
                        "change": change, "instruction": None, "origin": "video", "transition": n})
    return out


def candidates(src: SourceRecord, cfg) -> list[dict] | Rejection:
    if src.kind == "edit_table":
        out = []
        for t, (a, b, alts) in enumerate(src.pairs):
            if alts:
                pick = alts[choose(len(alts), 1, cfg.seed, src.key, t)[0]]
                out.append({"source": a, "target": b, "change": None, "instruction": pick, "origin": "table",
                            "transition": t})
        return out or Rejection("no_candidates", "the row has no transition with two images and an instruction")
    if src.kind == "video" and src.sample is not None:
        return _video_pairs(src) or Rejection("no_candidates", "no two consecutive frames with a change caption")
    return Rejection("not_applicable", f"edits come from video samples and edit tables, not {src.kind}")


def _request_instruction(unit: dict, cfg):
    p = unit["payload"]
    if p["instruction"] is not None:
        return None
    return ask(cfg.caption.edit_instruction_prompt_id, {"change": p["change"]}, (p["source"].data, p["target"].data), cfg,
               cfg.limits.budget_slack)


def _accept_instruction(unit: dict, text: str, cfg) -> dict | Rejection:
    return {"instruction": text.strip().splitlines()[0].strip()}


def _request_trace(unit: dict, cfg):
    p = unit["payload"]
    prompt = cfg.caption.edit_video_trace_prompt_id if p["origin"] == "video" else cfg.caption.edit_trace_prompt_id
    instruction = p["instruction"] if p["instruction"] is not None else unit["out"]["instruction"]
    return ask(prompt, {"instruction": instruction}, (p["source"].data, p["target"].data), cfg,
               cfg.limits.budget_slack)


def _accept_trace(unit: dict, text: str, cfg) -> dict | Rejection:
    return {"trace": " ".join(text.split())}


STEPS = (Step("instruction", _request_instruction, _accept_instruction), Step("trace", _request_trace, _accept_trace))


def assemble(unit: dict, cfg):
    out, p = unit["out"], unit["payload"]
    if p["instruction"] is not None:
        instruction = TextSegment(p["instruction"], role="instruction", loss=False, meta={"from": "table"})
    else:
        instruction = model_segment(unit, "instruction", role="instruction", loss=False, text=out["instruction"])
    segments = [
        as_input(p["source"], role="source"),
        instruction,
        model_segment(unit, "trace", role="think", loss=True, text=think(out["trace"])),
        as_target(p["target"]),
    ]
    meta = {"origin": p["origin"], "transition": p["transition"]}
    if p["change"]:
        meta["change_caption"] = p["change"]
    return build_sample(unit, KIND, segments, meta)
