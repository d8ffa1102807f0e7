"""The prompt type: a named, versioned text with its output budget. Prompt modules define values of it;
``captioners.prompts`` is the registry that collects them."""

from __future__ import annotations

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
