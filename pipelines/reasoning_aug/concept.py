"""Conceptual edits from web documents: pick an image pair, ask a question, judge it, explain the answer.

Four model calls per document, as in BAGEL: (1) choose a plausible input/output pair from the
document's images (by their caption-first captions); (2) a question about the input image whose
answer is the output image, with a short answer text; (3) a judge accepts or rejects the question;
(4) for accepted ones an explanation (about 200 tokens) that describes the answer image without
giving the answer text away. Sample: system (no loss), input image (understanding input), question
(no loss), ``<think> explanation </think>`` (loss), output image (generation target); the answer text
and the judge's reason go into the sample's meta.
"""

from __future__ import annotations

from pipelines.reasoning_aug.checks import (
    Rejection,
    check_leak,
    check_parts,
    check_text,
    parse_labeled,
    parse_pair,
    parse_verdict,
)
from pipelines.reasoning_aug.common import (
    Step,
    as_input,
    as_target,
    ask,
    build_sample,
    model_segment,
    think,
    with_provenance,
)
from pipelines.reasoning_aug.readers import SourceRecord
from schemas import ImageSegment, TextSegment

KIND = "reasoning_concept"


def candidates(src: SourceRecord, cfg) -> list[dict] | Rejection:
    if src.kind != "web" or src.sample is None:
        return Rejection("not_applicable", f"conceptual edits come from web documents, not {src.kind}")
    segs = src.sample.segments
    images, captions, body = [], [], []
    for i, seg in enumerate(segs):
        if isinstance(seg, ImageSegment):
            prev = segs[i - 1] if i else None
            cap = prev.text.strip() if isinstance(prev, TextSegment) and prev.role == "caption" else ""
            images.append(with_provenance(seg, {"key": src.key}, len(images)))
            captions.append(cap or "(no caption)")
        elif seg.role in ("body", "subtitle"):
            body.append(seg.text.strip())
    if len(images) < max(2, cfg.concept.min_images):
        return Rejection("no_candidates", f"{len(images)} image(s); a conceptual edit needs at least "
                         f"{max(2, cfg.concept.min_images)}", {"images": len(images)})
    context = " ".join(body)[: cfg.concept.context_chars]
    return [{"images": images, "captions": captions, "context": context}]


def _pair(unit: dict) -> tuple[ImageSegment, ImageSegment]:
    a, b = unit["out"]["pair"]
    imgs = unit["payload"]["images"]
    return imgs[a], imgs[b]


def _request_pair(unit: dict, cfg):
    p = unit["payload"]
    listing = "\n".join(f"{i + 1}. {c}" for i, c in enumerate(p["captions"]))
    return ask(cfg.caption.concept_pair_prompt_id, {"context": p["context"], "image_list": listing}, (), cfg, cfg.limits.budget_slack)


def _accept_pair(unit: dict, text: str, cfg) -> dict | Rejection:
    got = parse_pair(text, len(unit["payload"]["images"]))
    return got if isinstance(got, Rejection) else {"pair": list(got)}


def _request_question(unit: dict, cfg):
    p, (a, b) = unit["payload"], unit["out"]["pair"]
    variables = {"context": p["context"][:600], "input_caption": p["captions"][a], "output_caption": p["captions"][b]}
    return ask(cfg.caption.concept_question_prompt_id, variables, tuple(i.data for i in _pair(unit)), cfg, cfg.limits.budget_slack)


def _accept_question(unit: dict, text: str, cfg) -> dict | Rejection:
    parts = parse_labeled(text, ("Question", "Answer"))
    rej = check_parts(parts, ("Question", "Answer"))
    if rej:
        return rej
    question, answer = " ".join(parts["Question"].split()), " ".join(parts["Answer"].split())
    rej = (check_text(question, budget=10_000, limits=cfg.limits) or check_text(answer, budget=10_000, limits=cfg.limits)
           or check_leak(question, answer))
    return rej or {"question": question, "answer": answer}


def _request_judge(unit: dict, cfg):
    o = unit["out"]
    return ask(cfg.caption.concept_judge_prompt_id, {"question": o["question"], "answer": o["answer"]}, tuple(i.data for i in _pair(unit)), cfg,
               cfg.limits.budget_slack)


def _accept_judge(unit: dict, text: str, cfg) -> dict | Rejection:
    got = parse_verdict(text)
    if isinstance(got, Rejection):
        return got
    accepted, reason = got
    if not accepted:
        return Rejection("judge_rejected", reason or "no reason given")
    return {"judge_reason": reason}


def _request_explain(unit: dict, cfg):
    o = unit["out"]
    return ask(cfg.caption.concept_explain_prompt_id, {"question": o["question"], "answer": o["answer"]}, tuple(i.data for i in _pair(unit)),
               cfg, cfg.limits.budget_slack)


def _accept_explain(unit: dict, text: str, cfg) -> dict | Rejection:
    explanation = " ".join(text.split())
    return check_leak(explanation, unit["out"]["answer"]) or {"explanation": explanation}


STEPS = (Step("pair", _request_pair, _accept_pair, prose=False),
         Step("question", _request_question, _accept_question, prose=False),
         Step("judge", _request_judge, _accept_judge, prose=False),
         Step("explain", _request_explain, _accept_explain))


def assemble(unit: dict, cfg):
    o = unit["out"]
    a, b = _pair(unit)
    segments = [
        as_input(a, role="source"),
        model_segment(unit, "question", role="query", loss=False, text=o["question"]),
        model_segment(unit, "explain", role="think", loss=True, text=think(o["explanation"])),
        as_target(b),
    ]
    meta = {"answer": o["answer"], "judge_reason": o["judge_reason"], "pair": o["pair"],
            "captions": [unit["payload"]["captions"][i] for i in o["pair"]]}
    return build_sample(unit, KIND, segments, meta)
