"""Named, versioned prompts (``name@vN``). Every sample records the prompt id it was made with.

A prompt asks the model only for content; pipelines build any structure (``<think>`` wrappers,
ordering) themselves. Length budgets follow BAGEL: change captions <= 30 tokens, caption-first image
captions one sentence, free-form edit traces about 60 tokens, conceptual edit explanations about 200.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prompt:
    id: str  # name@vN
    template: str  # str.format fields filled from CaptionRequest.variables
    max_tokens: int
    n_images: int = 0  # images the prompt expects, in order
    system: str | None = None
    few_shot: tuple[tuple[str, str], ...] = ()  # (user text, assistant text) examples

    def render(self, variables: dict) -> str:
        try:
            return self.template.format(**variables)
        except KeyError as e:
            raise KeyError(f"prompt {self.id}: missing variable {e.args[0]!r}") from None


PROMPTS: dict[str, Prompt] = {}


def register(*prompts: Prompt) -> None:
    for p in prompts:
        if "@v" not in p.id:
            raise ValueError(f"prompt id {p.id!r} must be name@vN")
        PROMPTS[p.id] = p


def get_prompt(prompt_id: str) -> Prompt:
    if prompt_id not in PROMPTS:
        raise KeyError(f"unknown prompt {prompt_id!r} (known: {', '.join(sorted(PROMPTS))})")
    return PROMPTS[prompt_id]


# caption prompts: change_caption@v1, image_caption@v1, summarize@v1, topic_label@v1 (see below)

from . import prompts_reasoning  # noqa: E402,F401  (registers the reasoning prompts)
