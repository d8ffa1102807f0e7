"""Named, versioned prompts (``name@vN``). Every sample records the prompt id it was made with.

A prompt asks the model only for content; pipelines build any structure (``<think>`` wrappers,
ordering) themselves. Length budgets follow BAGEL: change captions <= 30 tokens, caption-first image
captions one sentence, free-form edit traces about 60 tokens, conceptual edit explanations about 200.
"""

from __future__ import annotations

import re

from captioners.prompt import Prompt
from captioners.prompts_caption import (  # noqa: F401  (re-exported)
    CAPTION_PROMPTS, CHANGE_CAPTION, IMAGE_CAPTION, SUMMARIZE, TOPIC_LABEL, TOPIC_LABELS,
)
from captioners.prompts_reasoning import REASONING_PROMPTS

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


def match_choice(prompt_id: str, text: str) -> str | None:
    """The label of a classification prompt that ``text`` answers with, or None when it names none.

    Models add punctuation, capitals or a short lead-in; the first label found as a whole word wins.
    """
    choices = get_prompt(prompt_id).choices
    words = re.findall(r"[a-z]+", text.lower())
    for w in words:
        if w in choices:
            return w
    return None


register(*CAPTION_PROMPTS, *REASONING_PROMPTS)
