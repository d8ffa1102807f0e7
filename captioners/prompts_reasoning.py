"""Reasoning-augmentation prompts (t2i, free-form edit, conceptual edit), collected by the registry in ``captioners.prompts``.

Each prompt asks for content only: the pipeline (pipelines/reasoning_aug) adds the system prompt, the
``<think> ... </think>`` wrapper and the ordering. Labelled outputs (``Guidance:``, ``Question:``, ...)
are parsed and checked by pipelines/reasoning_aug/checks.py; a missing label rejects the output.
Budgets (``max_tokens``) are the targets the checks hold outputs to: free-form edit traces about 60
tokens, conceptual explanations about 200 (BAGEL, section 3.3.4).

``captioners.prompts`` (the registry) imports this module and registers ``REASONING_PROMPTS``.
"""

from __future__ import annotations

from captioners.prompt import Prompt

# The system prompt that opens every reasoning sample (not sent to the captioning model).
THINK_SYSTEM_ID = "think_system@v1"
THINK_SYSTEM = (
    "Plan before you draw. First reason about what the image has to show, inside <think> </think> tags, "
    "then produce the image. Answer in the form: <think> your plan </think> image."
)

def _shot(template: str, reply: str, /, **variables) -> tuple[str, str]:
    """A few-shot turn: the template filled with an example, and the reply the model should give."""
    return template.format(**variables), reply


_T2I_QUERY = (
    "Here is an image{caption_note}.\n"
    "Write one brief, casual request (at most 25 words) that this image would answer. Leave details "
    "open: mention the idea, not every colour, position or style. Reply with the request only."
)
_RAMEN = ' (its caption: "A bowl of ramen with a soft-boiled egg, scallions and nori on a dark wooden table.")'

T2I_QUERY = Prompt(
    id="t2i_query@v1",
    system="You write short requests that a person might type into an image generator.",
    template=_T2I_QUERY,
    max_tokens=40,
    n_images=1,
    few_shot=(
        _shot(_T2I_QUERY, "A cosy bowl of noodle soup for a rainy evening.", caption_note=_RAMEN),
        _shot(_T2I_QUERY, "Show someone fixing a loose cupboard door.",
              caption_note=' (its caption: "A hand turns a screwdriver to fasten a hinge on a white cabinet door.")'),
    ),
)

_T2I_TRACE = (
    "A user asked: \"{query}\"\nThe image shown answers it{caption_note}.\n"
    "Write two parts.\nGuidance: one or two sentences on what the image must contain to satisfy the "
    "request.\nRefined prompt: one detailed prompt (subject, setting, colours, composition, light, style) "
    "that this exact image satisfies.\nUse the two labels and nothing else."
)

T2I_TRACE = Prompt(
    id="t2i_trace@v1",
    system="You plan images for an image generator. You describe what the given image actually shows.",
    template=_T2I_TRACE,
    max_tokens=200,
    n_images=1,
    few_shot=(
        _shot(_T2I_TRACE,
              "Guidance: The image should centre on a steaming bowl of noodle soup and feel warm and comforting, "
              "the kind of meal one wants on a cold wet night.\n"
              "Refined prompt: A ceramic bowl of ramen with a halved soft-boiled egg, sliced scallions and a sheet "
              "of nori, steam rising, on a dark wooden table, warm low light from the left, close-up from slightly "
              "above, shallow depth of field, photographic style.",
              query="A cosy bowl of noodle soup for a rainy evening.", caption_note=_RAMEN),
    ),
)

_EDIT_INSTRUCTION = (
    "The first image becomes the second. What changed: \"{change}\"\n"
    "Write one imperative instruction (at most 20 words) that would turn the first image into the second. "
    "Reply with the instruction only."
)

EDIT_INSTRUCTION = Prompt(
    id="edit_instruction@v1",
    system="You turn descriptions of change into editing instructions.",
    template=_EDIT_INSTRUCTION,
    max_tokens=32,
    n_images=2,
    few_shot=(
        _shot(_EDIT_INSTRUCTION, "Zoom in on the front of the black car so the grille and headlights fill the frame.",
              change="The camera moves closer, emphasising the front grille and headlights of the black car."),
    ),
)

_EDIT_TRACE_RULES = (
    "In at most 60 words, think through the edit: what must change, and what must stay the same{keep}. "
    "Write it as a plan, in plain sentences, without restating the instruction word for word."
)
_EDIT_TRACE = "Source image, then the edited result. Instruction: \"{instruction}\"\n" + _EDIT_TRACE_RULES.format(
    keep=" (including the layout and structure of the scene)")
_VIDEO_TRACE = "Two frames of one video, earlier then later. Instruction: \"{instruction}\"\n" + _EDIT_TRACE_RULES.format(
    keep=" (people, objects and background that persist)")

EDIT_TRACE = Prompt(
    id="edit_trace@v1",
    system="You reason briefly about image edits before they are made.",
    template=_EDIT_TRACE,
    max_tokens=60,
    n_images=2,
    few_shot=(
        _shot(_EDIT_TRACE,
              "The street needs a winter look: a layer of snow on the roofs, cars and pavement, falling flakes and "
              "a paler, overcast sky. The buildings, their positions, the parked cars and the camera angle stay "
              "exactly as they are.",
              instruction="Make it snow."),
    ),
)

EDIT_TRACE_VIDEO = Prompt(
    id="edit_trace_video@v1",
    system="You reason briefly about how a scene changes from one moment to the next.",
    template=_VIDEO_TRACE,
    max_tokens=60,
    n_images=2,
    few_shot=(
        _shot(_VIDEO_TRACE,
              "The kettle should tilt over the blue mug with a thin stream of coffee falling into it, and the hand "
              "moves up to hold the kettle higher. The table, the mug's position, the lighting and the fixed "
              "camera view do not change.",
              instruction="Have the woman pour the coffee into the mug."),
    ),
)

_CONCEPT_PAIR = (
    "A document's text (excerpt): \"{context}\"\nIts images, in order:\n{image_list}\n"
    "Pick two images where the second follows from the first by a change one could ask about (a step, a "
    "transformation, a cause and effect). Reply as \"A -> B\" with the two image numbers and nothing else."
)

CONCEPT_PAIR = Prompt(
    id="concept_pair@v1",
    system="You read illustrated documents and find images that follow from one another.",
    template=_CONCEPT_PAIR,
    max_tokens=12,
    n_images=0,
    few_shot=(
        _shot(_CONCEPT_PAIR, "1 -> 3",
              context="How to repot a plant: loosen the roots, move it to a bigger pot, water well.",
              image_list="1. A small plant in a cracked pot.\n2. Hands loosening a root ball.\n"
                         "3. The plant in a larger terracotta pot, freshly watered."),
    ),
)

_CONCEPT_QUESTION = (
    "Context: \"{context}\"\nThe first image shows: {input_caption}\nThe second image shows: "
    "{output_caption}\nWrite a question about the first image whose answer is the second image, and a "
    "short answer (a few words) naming what the second image shows. The question must not contain the "
    "answer.\nQuestion: ...\nAnswer: ..."
)
_CATERPILLAR = {"context": "Caterpillars spin a chrysalis and emerge weeks later.",
                "input_caption": "A green caterpillar on a milkweed leaf.",
                "output_caption": "An orange and black monarch butterfly on a flower."}
_METAMORPHOSIS = "What will this creature look like once its metamorphosis is complete?"

CONCEPT_QUESTION = Prompt(
    id="concept_question@v1",
    system="You write questions whose answer is an image.",
    template=_CONCEPT_QUESTION,
    max_tokens=80,
    n_images=2,
    few_shot=(_shot(_CONCEPT_QUESTION, f"Question: {_METAMORPHOSIS}\nAnswer: a monarch butterfly", **_CATERPILLAR),),
)

_CONCEPT_JUDGE = (
    "The first image is the question image, the second is the answer image.\nQuestion: \"{question}\"\n"
    "Answer: \"{answer}\"\nAccept only if the question is clear, can be answered from the first image "
    "with general knowledge, the second image is a correct answer, and the question does not give the "
    "answer away. Reply \"ACCEPT: reason\" or \"REJECT: reason\" in one line."
)

CONCEPT_JUDGE = Prompt(
    id="concept_judge@v1",
    system="You review questions for a visual reasoning dataset. You are strict.",
    template=_CONCEPT_JUDGE,
    max_tokens=40,
    n_images=2,
    few_shot=(
        _shot(_CONCEPT_JUDGE, "ACCEPT: the caterpillar is recognisable and the butterfly is the expected adult form.",
              question=_METAMORPHOSIS, answer="a monarch butterfly"),
        _shot(_CONCEPT_JUDGE, "REJECT: the question already names the butterfly.",
              question="Show the butterfly this caterpillar becomes.", answer="a monarch butterfly"),
    ),
)

_CONCEPT_EXPLAIN = (
    "The first image goes with the question, the second image is the answer.\nQuestion: \"{question}\"\n"
    "Answer (do not write it): \"{answer}\"\nIn at most 150 words, reason from what the first image shows "
    "to what the answer image must look like: its subject, shapes, colours, setting and composition. "
    "Describe the answer image without ever writing the answer words."
)

CONCEPT_EXPLAIN = Prompt(
    id="concept_explain@v1",
    system="You explain, step by step, how to picture the answer to a visual question.",
    template=_CONCEPT_EXPLAIN,
    max_tokens=200,
    n_images=2,
    few_shot=(
        _shot(_CONCEPT_EXPLAIN,
              "The first image shows a striped green larva feeding on a leaf. After it pupates, the adult that "
              "emerges has two pairs of broad wings, bright orange crossed by thick black veins with white dots "
              "along the black borders, a slim dark body and thin antennae. The picture should show this adult "
              "resting on a flower with its wings spread, seen from above, in soft daylight against a green blur.",
              question=_METAMORPHOSIS, answer="a monarch butterfly"),
    ),
)

REASONING_PROMPTS = (T2I_QUERY, T2I_TRACE, EDIT_INSTRUCTION, EDIT_TRACE, EDIT_TRACE_VIDEO, CONCEPT_PAIR,
                     CONCEPT_QUESTION, CONCEPT_JUDGE, CONCEPT_EXPLAIN)

