"""What the three generators share: the step type, the unit record layout, and sample building blocks.

A unit record (one per source record and generator, or per candidate when a record gives several):

| key     | meaning                                                                          |
|---------|----------------------------------------------------------------------------------|
| gen     | ``t2i``, ``edit`` or ``concept``                                                 |
| src     | the source: input file, key, position, kind, licence and original provenance    |
| payload | what the generator works from (images as ``ImageSegment``, captions, context)    |
| cand    | the candidate's index inside its source record (keys depend on it)               |
| out     | parsed model outputs so far, by name                                             |
| texts   | raw accepted texts by step: text, status, prompt id, tokens                      |
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from captioners.base import CaptionRequest
from captioners.prompts import get_prompt
from captioners.prompts_reasoning import THINK_SYSTEM, THINK_SYSTEM_ID
from pipelines.reasoning_aug.checks import Rejection
from schemas import CaptionerInfo, ImageSegment, Sample, Source, TextSegment, make_key


@dataclass(frozen=True)
class Step:
    """One model call of a generator.

    request(unit, cfg) -> the request, or None when the step does not apply to this unit.
    accept(unit, text, cfg) -> outputs to merge into ``unit["out"]``, or a Rejection.
    prose: the text is free prose (all of ``check_text`` applies); short replies (an image choice,
      a verdict) are checked only for emptiness, length and control characters.
    """

    name: str
    request: Callable[[dict, object], CaptionRequest | None]
    accept: Callable[[dict, str, object], dict | Rejection]
    prose: bool = True


def ask(prompt_id: str, variables: dict, images: tuple, cfg, slack: float) -> CaptionRequest:
    """A request whose token limit sits just above the prompt's budget, so an over-long reply is caught."""
    p = get_prompt(prompt_id)
    return CaptionRequest(prompt_id=prompt_id, variables=variables, images=tuple(images),
                          max_tokens=int(p.max_tokens * slack) + 1, temperature=cfg.caption.temperature, seed=cfg.seed)


def choose(n: int, k: int, *seed_parts) -> list[int]:
    """k of range(n), deterministic in the seed parts, in ascending order."""
    ranked = sorted(range(n), key=lambda i: hashlib.sha1("|".join(map(str, (*seed_parts, i))).encode()).hexdigest())
    return sorted(ranked[:k])


def think(content: str) -> str:
    return f"<think> {content} </think>"


def system_segment() -> TextSegment:
    return TextSegment(THINK_SYSTEM, role="system", loss=False, prompt_id=THINK_SYSTEM_ID)


def model_segment(unit: dict, step: str, role: str, loss: bool, text: str | None = None) -> TextSegment:
    """A text segment from a model output, with its prompt id, status and token count."""
    t = unit["texts"][step]
    return TextSegment(t["text"] if text is None else text, role=role, loss=loss, prompt_id=t["prompt_id"],
                       status=t["status"], meta={"tokens": t["tokens"]})


def as_input(img: ImageSegment, role: str = "source") -> ImageSegment:
    """The image as an understanding input (ViT and clean latent), no loss."""
    return dataclasses.replace(img, understanding=True, generation=False, role=role)


def as_target(img: ImageSegment) -> ImageSegment:
    """The image as the generation target (loss on its noised latent)."""
    return dataclasses.replace(img, understanding=False, generation=True, role="target")


def with_provenance(img: ImageSegment, src: dict, index: int) -> ImageSegment:
    prov = {**img.provenance, "from_key": src["key"], "from_image": index}
    return dataclasses.replace(img, provenance=prov)


def build_sample(unit: dict, kind: str, segments: list, meta: dict) -> Sample:
    """The sample of a unit: deterministic key from its source, provenance pointing at input and key."""
    src, gen = unit["src"], unit["gen"]
    key = make_key(f"{gen}-{src['key']}", src["uri"], src["key"], gen, unit["cand"])
    cap = unit.get("captioner") or {"backend": "unknown", "model": "unknown"}
    prompt_ids = tuple(t["prompt_id"] for t in unit["texts"].values())
    return Sample(
        key=key,
        kind=kind,
        segments=(system_segment(), *segments),
        source=Source(uri=src["uri"], licence=src.get("licence"), position=src["position"], extra=src["extra"]),
        captioner=CaptionerInfo(cap["backend"], cap["model"], prompt_ids),
        meta={"generator": gen, "candidate": unit["cand"], **meta},
    )
