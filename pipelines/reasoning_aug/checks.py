"""Validators of model output: every text a model returns passes these before it enters a sample.

A check returns ``None`` (accept) or a ``Rejection`` whose ``reason`` becomes the manifest reason of a
``filtered`` record; the rejected text goes into the record's ``detail`` for inspection. Reasons:

| reason          | meaning                                                                      |
|-----------------|------------------------------------------------------------------------------|
| empty           | nothing but whitespace or punctuation                                        |
| over_budget     | more tokens than the prompt's budget (times the slack), or cut by the limit  |
| control_chars   | control characters or U+FFFD replacement characters                          |
| repetition      | a word, phrase or character run repeated so much the text is degenerate      |
| no_words        | too few letters to be language                                               |
| stray_markup    | the model wrote structure the pipeline owns (``<think>``, role tags)         |
| missing_part    | a required labelled part is absent or empty                                  |
| answer_leak     | a concept question or explanation contains the answer text                   |
| bad_choice      | an image-pair choice that does not parse or names images that do not exist   |
| judge_rejected  | the judge model rejected the concept question (its reason is kept)           |
| judge_unclear   | the judge reply is neither ACCEPT nor REJECT                                 |
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rejection:
    reason: str
    message: str
    scores: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TextLimits:
    """Thresholds for ``check_text``.

    budget_slack: outputs may run to ``budget * budget_slack`` tokens before ``over_budget``.
    max_top_ngram_share: share of all word trigrams taken by the most frequent one (degenerate loops).
    min_distinct_ratio: distinct words / words, for texts of at least 12 words.
    max_char_run: longest run of one repeated character.
    min_letter_share: letters / non-space characters.
    """

    budget_slack: float = 1.25
    max_top_ngram_share: float = 0.25
    min_distinct_ratio: float = 0.3
    max_char_run: int = 12
    min_letter_share: float = 0.5


_WORD = re.compile(r"\w+", re.UNICODE)
_TOKENISH = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_MARKUP = re.compile(r"</?think>|<\|[a-z_]+\|>|^(system|assistant|user)\s*:", re.IGNORECASE | re.MULTILINE)
_STOP = frozenset(["a", "an", "the", "of", "to", "in", "on", "at", "and", "or", "for", "with", "by", "from", "is", "are", "be", "it", "its", "this", "that"])


def estimate_tokens(text: str) -> int:
    """A tokenizer-free token count (words and punctuation marks), used when a backend reports none."""
    return len(_TOKENISH.findall(text))


def clean_text(text: str) -> str:
    """Trim whitespace and one pair of wrapping quotes; unwrap a reply the model put inside <think> tags."""
    t = text.strip()
    m = re.fullmatch(r"<think>(.*)</think>", t, re.DOTALL | re.IGNORECASE)
    if m:
        t = m.group(1).strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'":
        t = t[1:-1].strip()
    return t


def check_text(text: str, budget: int, output_tokens: int = 0, truncated: bool = False,
               limits: TextLimits = TextLimits()) -> Rejection | None:
    """Empty, over budget, control characters, degenerate repetition, no language, stray markup."""
    if not _WORD.search(text):
        return Rejection("empty", "the model returned no words")
    n_tok = output_tokens or estimate_tokens(text)
    cap = int(budget * limits.budget_slack)
    if truncated or n_tok > cap:
        how = "was cut at the token limit" if truncated else f"has {n_tok} tokens"
        return Rejection("over_budget", f"the text {how}; the budget is {budget} (up to {cap})",
                         {"tokens": n_tok, "budget": budget})
    bad = [c for c in text if (unicodedata.category(c) == "Cc" and c not in "\n\t\r") or c == "\ufffd"]
    if bad:
        return Rejection("control_chars", f"{len(bad)} control or replacement characters", {"count": len(bad)})
    run = max((len(m.group(0)) for m in re.finditer(r"(.)\1*", text) if not m.group(0).isspace()), default=0)
    if run > limits.max_char_run:
        return Rejection("repetition", f"one character repeats {run} times in a row", {"char_run": run})
    words = [w.lower() for w in _WORD.findall(text)]
    if len(words) >= 12:
        distinct = len(set(words)) / len(words)
        if distinct < limits.min_distinct_ratio:
            return Rejection("repetition", f"only {distinct:.0%} of the words are distinct",
                             {"distinct_ratio": round(distinct, 3)})
        grams = Counter(zip(words, words[1:], words[2:]))
        top = grams.most_common(1)[0][1] / max(1, len(words) - 2)
        if grams.most_common(1)[0][1] >= 3 and top > limits.max_top_ngram_share:
            return Rejection("repetition", f"one three-word phrase makes up {top:.0%} of the text",
                             {"top_ngram_share": round(top, 3)})
    chars = [c for c in text if not c.isspace()]
    letters = sum(c.isalpha() for c in chars) / max(1, len(chars))
    if letters < limits.min_letter_share:
        return Rejection("no_words", f"only {letters:.0%} of the characters are letters",
                         {"letter_share": round(letters, 3)})
    if _MARKUP.search(text):
        return Rejection("stray_markup", "the text contains structure the pipeline adds itself (think or role tags)")
    return None


def parse_labeled(text: str, labels: tuple[str, ...]) -> dict[str, str]:
    """``{label: content}`` for ``Label: content`` parts (case-insensitive, any order, optional markdown)."""
    alt = "|".join(re.escape(x) for x in labels)
    pat = re.compile(rf"^[ \t*#_-]*({alt})[ \t*_]*:[ \t*_]*", re.IGNORECASE | re.MULTILINE)
    marks = list(pat.finditer(text))
    out: dict[str, str] = {}
    for m, nxt in zip(marks, marks[1:] + [None]):
        label = next(x for x in labels if x.lower() == m.group(1).lower())
        if label not in out:
            out[label] = text[m.end(): nxt.start() if nxt else len(text)].strip()
    return out


def check_parts(parts: dict[str, str], required: tuple[str, ...]) -> Rejection | None:
    missing = [r for r in required if not _WORD.search(parts.get(r, ""))]
    if missing:
        return Rejection("missing_part", f"required part(s) missing or empty: {', '.join(missing)}",
                         {"missing": missing})
    return None


def _content_words(text: str) -> list[str]:
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP]


def _stem(w: str) -> str:
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w


def check_leak(text: str, answer: str) -> Rejection | None:
    """The answer leaks when its words appear as a phrase in the text, or all its content words do."""
    ans = _content_words(answer)
    if not ans:
        return None
    words = _content_words(text)
    joined, phrase = " " + " ".join(words) + " ", " " + " ".join(ans) + " "
    if phrase in joined or (len(set(ans)) <= 4 and set(ans) <= set(words)):
        return Rejection("answer_leak", f"the text gives away the answer {answer!r}", {"answer_words": len(ans)})
    return None


def parse_pair(text: str, n_images: int) -> tuple[int, int] | Rejection:
    """Zero-based (input, output) image indices from an ``A -> B`` reply naming images 1..n."""
    nums = [int(x) for x in re.findall(r"\d+", text)[:2]]
    if len(nums) < 2:
        return Rejection("bad_choice", "the reply does not name two images")
    a, b = nums
    if not (1 <= a <= n_images and 1 <= b <= n_images) or a == b:
        return Rejection("bad_choice", f"images {a} and {b} are not two distinct images of 1..{n_images}",
                         {"choice": [a, b], "n_images": n_images})
    return a - 1, b - 1


def parse_verdict(text: str) -> tuple[bool, str] | Rejection:
    """(accepted, reason) from an ``ACCEPT: ...`` / ``REJECT: ...`` reply."""
    m = re.search(r"\b(ACCEPT|REJECT)(?:ED)?\b[\s:.,-]*(.*)", text, re.IGNORECASE | re.DOTALL)
    if not m:
        return Rejection("judge_unclear", "the judge reply is neither ACCEPT nor REJECT")
    return m.group(1).upper() == "ACCEPT", m.group(2).strip()
