"""A deterministic stand-in captioner for tests of stage logic (never for judging captions).

The text is a few words picked by a hash of the prompt id, the variables and the image bytes, so the
same request always gets the same text and different frames get different text. Classification
prompts get one of their labels; ``summarize`` gets the first ``max_words`` words of its text.
Requests are checked like a real backend checks them (prompt, variables, image count, images decode).
``engine_args={"error_every": N}`` makes about one request in N (chosen by hash) an ``error`` result,
for testing how stages record failed captions.
"""

from __future__ import annotations

import hashlib
import json

from captioners.base import CaptionerConfig, CaptionRequest, CaptionResult
from captioners.inputs import RequestError, error_result, image_fingerprint, prepare

_WORDS = (
    "the",
    "camera",
    "pans",
    "left",
    "right",
    "person",
    "picks",
    "up",
    "a",
    "red",
    "cup",
    "car",
    "moves",
    "closer",
    "scene",
    "cuts",
    "to",
    "kitchen",
    "hand",
    "opens",
    "door",
    "zooms",
    "in",
    "on",
    "screen",
    "dog",
    "runs",
    "across",
    "street",
    "light",
    "turns",
    "green",
    "blue",
    "box",
    "slides",
    "away",
)


class StubCaptioner:
    backend = "stub"

    def __init__(self, cfg: CaptionerConfig):
        self.model = cfg.model or "stub"
        self.error_every = int(cfg.engine_args.get("error_every", 0))

    def caption(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        return [self._one(r) for r in requests]

    def _one(self, req: CaptionRequest) -> CaptionResult:
        try:
            prep = prepare(req)
        except RequestError as e:
            return error_result(str(e))
        h = hashlib.sha256(req.prompt_id.encode())
        h.update(json.dumps(req.variables, sort_keys=True, default=str).encode())
        for im in req.images:
            h.update(image_fingerprint(im).encode())
        digest = h.digest()
        if self.error_every and int.from_bytes(digest[:4], "big") % self.error_every == 0:
            return error_result("stub: simulated failure")
        if prep.prompt.choices:
            words = [prep.prompt.choices[digest[0] % len(prep.prompt.choices)]]
        elif "text" in req.variables and "max_words" in dict(prep.prompt.defaults):
            limit = int(req.variables.get("max_words", dict(prep.prompt.defaults)["max_words"]))
            words = str(req.variables["text"]).split()[:limit]
        else:
            words = [_WORDS[b % len(_WORDS)] for b in digest[: 4 + digest[-1] % 5]]
        status = "ok"
        if len(words) > req.max_tokens:
            words, status = words[: req.max_tokens], "truncated"
        return CaptionResult(
            text=" ".join(words), status=status, prompt_tokens=len(prep.text.split()), output_tokens=len(words)
        )

    def close(self) -> None:
        pass
