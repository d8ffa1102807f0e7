"""Named, versioned prompts (``name@vN``). Every sample records the prompt id it was made with.

A prompt asks the model only for content; pipelines build any structure (``<think>`` wrappers,
ordering) themselves. Length budgets follow BAGEL: change captions <= 30 tokens, caption-first image
captions one sentence, free-form edit traces about 60 tokens, conceptual edit explanations about 200.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

from captioners.prompt import Prompt
from captioners.prompts_caption import (  # noqa: F401  (re-exported)
    CAPTION_PROMPTS,
    CHANGE_CAPTION,
    IMAGE_CAPTION,
    SUMMARIZE,
    TOPIC_LABEL,
    TOPIC_LABELS,
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

# ------------------------------------------------------------------------------------------ prompt files

PROMPT_FILE_KEYS = {"id": "a name such as my_change_caption", "version": "a positive integer",
                    "text": "the prompt, with {variables}", "max_tokens": "the output budget in tokens",
                    "n_images": "images placed before the text (default 0)", "system": "a system message",
                    "defaults": "values of variables a request may leave out", "choices": "labels of a classifier"}
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


def prompt_variables(text: str) -> set[str]:
    """The ``{variable}`` names a prompt text uses; ValueError when its braces do not parse."""
    names = set()
    for _, field, _, _ in string.Formatter().parse(text):
        if field is not None:
            if not field.isidentifier():
                raise ValueError(f"{{{field}}} is not a variable name (write {{{{ and }}}} for literal braces)")
            names.add(field)
    return names


def _entry(where: str, e: object, seen: set[str]) -> Prompt:
    from schemas.config import ConfigError

    if not isinstance(e, dict):
        raise ConfigError(f"{where}: each prompt must be a mapping with id, version, text and max_tokens")
    if isinstance(e.get("id"), str):
        where = f"{where} ({e['id']})"
    unknown = sorted(set(e) - PROMPT_FILE_KEYS.keys())
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(PROMPT_FILE_KEYS)})")
    missing = [k for k in ("id", "version", "text", "max_tokens") if k not in e]
    if missing:
        raise ConfigError(f"{where}: missing {missing[0]!r} ({PROMPT_FILE_KEYS[missing[0]]})")
    name, version, text, budget = e["id"], e["version"], e["text"], e["max_tokens"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"{where}: id {name!r} must be letters, digits, '_', '.' or '-' (the version goes in "
                          "'version', not in the id)")
    if type(version) is not int or version < 1:
        raise ConfigError(f"{where}: version must be a positive integer, not {version!r}")
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{where}: text must be a non-empty string")
    if type(budget) is not int or budget < 1:
        raise ConfigError(f"{where}: max_tokens must be a positive integer, not {budget!r}")
    n_images = e.get("n_images", 0)
    if type(n_images) is not int or n_images < 0:
        raise ConfigError(f"{where}: n_images must be 0 or more, not {n_images!r}")
    if e.get("system") is not None and not isinstance(e["system"], str):
        raise ConfigError(f"{where}: system must be a string")
    defaults = e.get("defaults") or {}
    choices = e.get("choices") or []
    if not isinstance(defaults, dict) or not all(isinstance(k, str) for k in defaults):
        raise ConfigError(f"{where}: defaults must map variable names to values")
    if not isinstance(choices, list) or not all(isinstance(c, str) and c for c in choices):
        raise ConfigError(f"{where}: choices must be a list of labels")
    try:
        names = prompt_variables(text)
    except ValueError as err:
        raise ConfigError(f"{where}: text: {err}") from None
    stray = sorted(set(defaults) - names)
    if stray:
        raise ConfigError(f"{where}: defaults name {stray[0]!r}, which the text does not use")
    pid = f"{name}@v{version}"
    if pid in seen:
        raise ConfigError(f"{where}: {pid} appears twice in the file")
    seen.add(pid)
    prompt = Prompt(id=pid, template=text, max_tokens=budget, n_images=n_images, system=e.get("system"),
                    defaults=tuple(defaults.items()), choices=tuple(c.lower() for c in choices))
    known = PROMPTS.get(pid)
    if known is not None and known != prompt:
        raise ConfigError(f"{where}: {pid} already exists with other settings; a changed prompt needs a new version "
                          "so recorded ids keep their meaning")
    return prompt


def read_prompts_file(path: str | Path) -> list[Prompt]:
    """The prompts of a YAML prompt file, checked; ConfigError with one sentence naming the problem.

    The file is a list of prompts, or a mapping with a ``prompts`` list. A prompt::

        - id: short_change          # its id becomes short_change@v2
          version: 2
          text: "In at most {max_words} words, say what changed between the two frames."
          max_tokens: 24            # the output budget
          n_images: 2               # optional: images placed before the text
          defaults: {max_words: 12} # optional: values for variables a request leaves out
    """
    import yaml

    from schemas.config import ConfigError

    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"prompts file {path} cannot be read ({type(e).__name__}: {e})") from None
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"prompts file {path} is not valid YAML{at} ({getattr(e, 'problem', None) or e})") from None
    if isinstance(doc, dict) and set(doc) == {"prompts"}:
        doc = doc["prompts"]
    if not isinstance(doc, list) or not doc:
        raise ConfigError(f"prompts file {path} must hold a non-empty list of prompts (or a mapping with a "
                          "'prompts' list)")
    seen: set[str] = set()
    return [_entry(f"prompts file {path}, prompt {i + 1}", e, seen) for i, e in enumerate(doc)]


def load_prompts_file(path: str | Path) -> list[Prompt]:
    """Read, check and register the prompts of a YAML prompt file (see ``read_prompts_file``); returns them.

    Nothing is registered unless the whole file is good. Loading the same file twice is harmless.
    """
    prompts = read_prompts_file(path)
    register(*prompts)
    return prompts
