"""Validators of model output on crafted texts: what passes, what is rejected, and with which reason."""

from __future__ import annotations

import pytest

from pipelines.reasoning_aug.checks import (
    Rejection,
    check_leak,
    check_parts,
    check_text,
    clean_text,
    parse_labeled,
    parse_pair,
    parse_verdict,
)

GOOD_TRACE = ("The sky should turn grey and snow should cover the roofs and the road, while the houses, the parked "
              "cars and the camera angle stay exactly where they are.")


def reason_of(r):
    return r.reason if isinstance(r, Rejection) else None


@pytest.mark.parametrize("text", [GOOD_TRACE, "A cosy bowl of soup for a rainy night.", "Zoom in on the red car.",
                                  "Line one of a plan.\nLine two\tof it."])
def test_well_formed_text_passes(text):
    assert check_text(text, budget=60) is None


@pytest.mark.parametrize("text,reason", [
    ("", "empty"),
    ("   \n\t ", "empty"),
    ("... !!! ???", "empty"),
    ("snow and " * 60, "over_budget"),
    ("fine words here\x00 and there", "control_chars"),
    ("broken \ufffd\ufffd decoding", "control_chars"),
    ("the bell rings" + "!" * 20, "repetition"),
    ("the the the the the the the the the the the the the snow", "repetition"),
    ("make it snow make it snow make it snow make it snow and then make it snow now", "repetition"),
    ("12 34 56 78 90 11 22 33 44 snow", "no_words"),
    ("<think> snow falls on the roofs </think> and more", "stray_markup"),
    ("assistant: the snow falls on the roofs", "stray_markup"),
])
def test_bad_text_is_rejected_with_its_reason(text, reason):
    assert reason_of(check_text(text, budget=60)) == reason


def test_budget_uses_reported_tokens_slack_and_truncation():
    assert check_text(GOOD_TRACE, budget=60, output_tokens=75) is None  # within 1.25x slack
    r = check_text(GOOD_TRACE, budget=60, output_tokens=76)
    assert r.reason == "over_budget" and r.scores == {"tokens": 76, "budget": 60}
    assert reason_of(check_text("short and sweet", budget=60, output_tokens=3, truncated=True)) == "over_budget"


def test_clean_text_unwraps_think_and_quotes():
    assert clean_text('  "Make it snow."  ') == "Make it snow."
    assert clean_text("<think> plan here </think>") == "plan here"
    assert clean_text("<think>a</think> b") == "<think>a</think> b"  # not a single wrapped reply


def test_labeled_parts_parse_in_any_case_and_markdown():
    text = "**Guidance:** the image needs a bowl.\nrefined PROMPT: a ceramic bowl of ramen, steam rising."
    parts = parse_labeled(text, ("Guidance", "Refined prompt"))
    assert parts == {"Guidance": "the image needs a bowl.", "Refined prompt": "a ceramic bowl of ramen, steam rising."}
    assert check_parts(parts, ("Guidance", "Refined prompt")) is None


@pytest.mark.parametrize("text,missing", [
    ("Guidance: the image needs a bowl.", ["Refined prompt"]),
    ("Guidance:\nRefined prompt: a bowl", ["Guidance"]),
    ("a bowl of soup, steam rising", ["Guidance", "Refined prompt"]),
])
def test_missing_parts_are_named(text, missing):
    r = check_parts(parse_labeled(text, ("Guidance", "Refined prompt")), ("Guidance", "Refined prompt"))
    assert r.reason == "missing_part" and r.scores["missing"] == missing


@pytest.mark.parametrize("text,answer,leaks", [
    ("What will this creature look like once its metamorphosis is complete?", "a monarch butterfly", False),
    ("Which butterfly does this caterpillar become?", "a monarch butterfly", False),  # 'monarch' not given away
    ("Show the monarch butterfly this caterpillar becomes.", "a monarch butterfly", True),
    ("What do the Butterflies look like?", "butterfly", True),  # plural and case
    ("What does the green fruit become when ripe?", "a ripe red tomato", False),
    ("The answer image shows a ripe red tomato on a vine.", "a ripe red tomato", True),
    ("Anything at all", "the", False),  # an answer of stop words cannot leak
])
def test_answer_leak(text, answer, leaks):
    assert (reason_of(check_leak(text, answer)) == "answer_leak") is leaks


@pytest.mark.parametrize("text,n,want", [
    ("1 -> 3", 3, (0, 2)), ("Image 2 then image 1.", 2, (1, 0)), ("3->3", 4, "bad_choice"),
    ("5 -> 1", 3, "bad_choice"), ("the first and the last", 3, "bad_choice"), ("0 -> 1", 3, "bad_choice"),
])
def test_parse_pair(text, n, want):
    got = parse_pair(text, n)
    assert (got.reason if isinstance(got, Rejection) else got) == want


@pytest.mark.parametrize("text,want", [
    ("ACCEPT: clear and answerable.", (True, "clear and answerable.")),
    ("Rejected - the question names the answer", (False, "the question names the answer")),
    ("reject", (False, "")),
    ("Looks fine to me", "judge_unclear"),
])
def test_parse_verdict(text, want):
    got = parse_verdict(text)
    assert (got.reason if isinstance(got, Rejection) else got) == want


def test_the_prompts_own_examples_pass_the_checks():
    """The few-shot replies show the model what is wanted; the validators must accept every one of them."""
    from captioners.prompts import get_prompt

    prose = ("t2i_query@v1", "t2i_trace@v1", "edit_instruction@v1", "edit_trace@v1", "edit_trace_video@v1",
             "concept_explain@v1")
    for pid in prose:
        p = get_prompt(pid)
        assert p.few_shot, pid
        for _, reply in p.few_shot:
            assert check_text(reply, budget=p.max_tokens) is None, pid
    trace = get_prompt("t2i_trace@v1").few_shot[0][1]
    assert check_parts(parse_labeled(trace, ("Guidance", "Refined prompt")), ("Guidance", "Refined prompt")) is None
    qa = parse_labeled(get_prompt("concept_question@v1").few_shot[0][1], ("Question", "Answer"))
    assert check_parts(qa, ("Question", "Answer")) is None and check_leak(qa["Question"], qa["Answer"]) is None
    assert check_leak(get_prompt("concept_explain@v1").few_shot[0][1], qa["Answer"]) is None
    assert parse_pair(get_prompt("concept_pair@v1").few_shot[0][1], 3) == (0, 2)
    verdicts = [parse_verdict(r)[0] for _, r in get_prompt("concept_judge@v1").few_shot]
    assert verdicts == [True, False]
    rejected_q = get_prompt("concept_judge@v1").few_shot[1][0]
    assert "Show the butterfly" in rejected_q  # the rejected example is the one that gives the answer away
