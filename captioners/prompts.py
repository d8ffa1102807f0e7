"""Named, versioned prompts (``name@vN``). Every sample records the prompt id it was made with.

A prompt asks the model only for content; pipelines build any structure (``<think>`` wrappers,
ordering) themselves. Length budgets follow BAGEL: change captions <= 30 tokens, caption-first image
captions one sentence, free-form edit traces about 60 tokens, conceptual edit explanations about 200.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Prompt:
    """A named, versioned prompt.

    id: ``name@vN``; a changed wording is a new version, so recorded ids keep their meaning.
    template: ``str.format`` text filled from ``CaptionRequest.variables``.
    max_tokens: the output budget the prompt is written for (``build_request`` uses it).
    n_images: images the prompt expects, in order, placed before the text (0: text-only).
    system: an optional system message.
    few_shot: (user text, assistant text) example turns placed before the request.
    defaults: (variable, value) pairs used when a request leaves the variable out.
    preamble: (variable, fragment) pairs; a fragment is put before the template, in order, only when its
      variable is given and non-empty (optional context such as the text around an image).
    choices: for classification prompts, the labels the answer must be one of (see ``match_choice``).
    """

    id: str
    template: str
    max_tokens: int
    n_images: int = 0
    system: str | None = None
    few_shot: tuple[tuple[str, str], ...] = ()
    defaults: tuple[tuple[str, object], ...] = ()
    preamble: tuple[tuple[str, str], ...] = ()
    choices: tuple[str, ...] = ()

    def render(self, variables: dict) -> str:
        values = {**dict(self.defaults), **{k: "" for k, _ in self.preamble}, **variables}
        try:
            head = "".join(frag.format(**values) for var, frag in self.preamble if str(values.get(var) or "").strip())
            return head + self.template.format(**values)
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


# BAGEL caps inter-frame change captions at 30 tokens to curb hallucination.
CHANGE_CAPTION = Prompt(
    id="change_caption@v1",
    template=(
        "The two images are consecutive frames from one video clip, in order. "
        "In one short sentence of at most 30 tokens, describe what changed from the first frame to the second: "
        "object motion, actions, camera movement or scene changes. Describe only the change, not the whole scene."
    ),
    max_tokens=30,
    n_images=2,
)

# Caption-first: a short caption inserted right before each web image.
IMAGE_CAPTION = Prompt(
    id="image_caption@v1",
    template=(
        "Write one concise sentence that describes this image, as a caption placed right before it in the "
        "document. Mention the main subject and what is happening; do not start with 'This image'."
    ),
    max_tokens=48,
    n_images=1,
    preamble=(("context", "Text around the image in its document:\n{context}\n\n"),),
)

# Text segments over 300 tokens are rewritten by a summariser.
SUMMARIZE = Prompt(
    id="summarize@v1",
    template=(
        "Summarize the following text in at most {max_words} words. Keep the facts, names and steps a reader "
        "needs; write plain prose with no introduction or heading.\n\nText:\n{text}"
    ),
    max_tokens=192,
    defaults=(("max_words", 100),),
)

TOPIC_LABELS = ("tutorial", "howto", "encyclopedic", "design", "other")

# Topic selection keeps tutorials, how-tos, encyclopedic entries and design content.
TOPIC_LABEL = Prompt(
    id="topic_label@v1",
    template=(
        "Classify the document below by its main purpose. Answer with exactly one label from this list and "
        "nothing else: " + ", ".join(TOPIC_LABELS) + ".\n\nDocument:\n{text}"
    ),
    max_tokens=5,
    choices=TOPIC_LABELS,
)

register(CHANGE_CAPTION, IMAGE_CAPTION, SUMMARIZE, TOPIC_LABEL)

from . import prompts_reasoning  # noqa: F401  (registers the reasoning prompts)
