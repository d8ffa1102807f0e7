"""The caption prompts: ids, BAGEL's length budgets, rendering, and reading a label answer."""

from __future__ import annotations

import pytest

from captioners import CaptionRequest, build_request, get_prompt, match_choice
from captioners.prompts import TOPIC_LABELS


def test_caption_prompts_are_registered_with_their_budgets():
    change = get_prompt("change_caption@v1")
    assert (change.n_images, change.max_tokens) == (2, 30)
    assert "30 tokens" in change.render({})
    for word in ("motion", "camera", "scene"):
        assert word in change.template
    assert get_prompt("image_caption@v1").n_images == 1
    assert get_prompt("summarize@v1").n_images == 0
    assert get_prompt("topic_label@v1").choices == ("tutorial", "howto", "encyclopedic", "design", "other")


def test_image_caption_context_is_optional():
    p = get_prompt("image_caption@v1")
    bare = p.render({})
    with_context = p.render({"context": "Step 3: tighten the bolts."})
    assert "Step 3: tighten the bolts." in with_context
    assert with_context.endswith(bare) and "Text around the image" not in bare
    assert p.render({"context": "   "}) == bare


def test_summarize_renders_text_and_word_budget_with_default():
    p = get_prompt("summarize@v1")
    assert "at most 40 words" in p.render({"text": "long text", "max_words": 40})
    assert "at most 100 words" in p.render({"text": "long text"})
    with pytest.raises(KeyError, match="text"):
        p.render({"max_words": 40})


def test_topic_label_lists_labels_and_answers_are_matched():
    text = get_prompt("topic_label@v1").render({"text": "How to bake bread"})
    assert all(label in text for label in TOPIC_LABELS) and "How to bake bread" in text
    assert match_choice("topic_label@v1", " Tutorial.") == "tutorial"
    assert match_choice("topic_label@v1", "Label: howto") == "howto"
    assert match_choice("topic_label@v1", "a recipe blog") is None


def test_unknown_prompt_names_the_known_ones():
    with pytest.raises(KeyError, match="change_caption@v1"):
        get_prompt("nope@v1")


def test_build_request_takes_the_prompt_budget():
    req = build_request("change_caption@v1", images=(b"a", b"b"))
    assert isinstance(req, CaptionRequest) and req.max_tokens == 30 and req.images == (b"a", b"b")
    assert build_request("summarize@v1", max_tokens=50, text="x").variables == {"text": "x"}
