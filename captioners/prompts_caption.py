"""Caption prompts of the video and web pipelines: change captions, caption-first image captions, summaries,
topic labels."""

from __future__ import annotations

from captioners.prompt import Prompt

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

CAPTION_PROMPTS = (CHANGE_CAPTION, IMAGE_CAPTION, SUMMARIZE, TOPIC_LABEL)
