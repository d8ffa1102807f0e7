"""Prompt files: a YAML list of prompts (id, version, text with variables, token budget) checked and registered;
a bad file stops with one sentence naming the file, the prompt and the problem, and registers nothing."""

from __future__ import annotations

import io

import pytest

from captioners import CaptionerConfig, build_request, get_prompt, make_captioner
from captioners.prompts import PROMPTS, load_prompts_file, read_prompts_file
from schemas.config import ConfigError

GOOD = """\
prompts:
  - id: short_change
    version: 2
    text: "In at most {max_words} words, say what changed between the two frames of {title}."
    max_tokens: 24
    n_images: 2
    defaults: {max_words: 12}
  - id: doc_kind
    version: 1
    text: "Is this a recipe or a manual? Answer with one word.\\n\\n{text}"
    max_tokens: 4
    choices: [recipe, manual]
"""


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def restore_registry():
    before = dict(PROMPTS)
    yield
    PROMPTS.clear()
    PROMPTS.update(before)


def test_a_prompt_file_registers_versioned_prompts_a_captioner_can_use(tmp_path, restore_registry):
    path = tmp_path / "prompts.yaml"
    path.write_text(GOOD)
    loaded = load_prompts_file(path)
    assert [p.id for p in loaded] == ["short_change@v2", "doc_kind@v1"]
    p = get_prompt("short_change@v2")
    assert (p.max_tokens, p.n_images) == (24, 2)
    assert p.render({"title": "a kitchen"}) == ("In at most 12 words, say what changed between the two frames of "
                                                "a kitchen.")
    assert get_prompt("doc_kind@v1").choices == ("recipe", "manual")
    req = build_request("short_change@v2", images=(_png(), _png()), title="a kitchen")
    assert req.max_tokens == 24  # the file's budget
    cap = make_captioner(CaptionerConfig(backend="stub", model="stub"))
    try:
        res = cap.caption([req, build_request("short_change@v2", images=(_png(),), title="x")])
    finally:
        cap.close()
    assert res[0].status == "ok" and res[0].text
    assert res[1].status == "error"  # the prompt's image count is enforced like a built-in's
    assert load_prompts_file(path) == loaded  # loading the same file again is harmless


@pytest.mark.parametrize(("text", "needle"), [
    ("prompts: [", "is not valid YAML at line"),
    ("just a string", "must hold a non-empty list of prompts"),
    ("- id: a\n  version: 1\n  text: hi\n", "prompt 1 (a): missing 'max_tokens'"),
    ("- {id: a, version: 1, text: hi, max_tokens: 5, budget: 3}", "unknown key 'budget'"),
    ("- {id: a@v1, version: 1, text: hi, max_tokens: 5}", "the version goes in 'version'"),
    ("- {id: a, version: 0, text: hi, max_tokens: 5}", "version must be a positive integer"),
    ("- {id: a, version: 1, text: '', max_tokens: 5}", "text must be a non-empty string"),
    ("- {id: a, version: 1, text: hi, max_tokens: -1}", "max_tokens must be a positive integer"),
    ("- {id: a, version: 1, text: 'say {', max_tokens: 5}", "prompt 1 (a): text:"),
    ("- {id: a, version: 1, text: 'say {0}', max_tokens: 5}", "{0} is not a variable name"),
    ("- {id: a, version: 1, text: 'say {x}', max_tokens: 5, defaults: {y: 1}}", "defaults name 'y'"),
    ("- {id: a, version: 1, text: hi, max_tokens: 5}\n- {id: a, version: 1, text: ho, max_tokens: 5}",
     "prompt 2 (a): a@v1 appears twice"),
    ("- {id: change_caption, version: 1, text: other words, max_tokens: 30, n_images: 2}",
     "change_caption@v1 already exists with other settings; a changed prompt needs a new version"),
])
def test_a_bad_prompt_file_is_one_sentence_and_registers_nothing(tmp_path, restore_registry, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_prompts_file(path)
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg and needle in msg, msg


def test_one_bad_prompt_registers_none_of_the_file(tmp_path, restore_registry):
    path = tmp_path / "bad.yaml"
    path.write_text("- {id: fine, version: 1, text: ok, max_tokens: 5}\n- {id: broken, version: 1, text: ok}\n")
    before = dict(PROMPTS)
    with pytest.raises(ConfigError, match=r"prompt 2 \(broken\): missing 'max_tokens'"):
        load_prompts_file(path)
    assert PROMPTS == before and "fine@v1" not in PROMPTS


def test_a_missing_prompt_file(tmp_path):
    with pytest.raises(ConfigError, match="prompts file .*missing.yaml cannot be read"):
        read_prompts_file(tmp_path / "missing.yaml")
