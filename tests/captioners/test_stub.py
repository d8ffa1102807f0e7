"""The stub backend: deterministic stand-in for stage-logic tests, checked like a real backend."""

from __future__ import annotations

from captioner_helpers import jpg

from captioners import CaptionerConfig, build_request, make_captioner


def test_same_request_same_text_other_frames_other_text():
    cap = make_captioner(CaptionerConfig(backend="stub"))
    a = build_request("change_caption@v1", images=(jpg((1, 2, 3)), jpg((200, 2, 3))))
    b = build_request("change_caption@v1", images=(jpg((1, 2, 3)), jpg((2, 200, 3))))
    r1, r2, r3 = cap.caption([a, b, a])
    assert r1 == r3 and r1.status == "ok" and r1.text and r1.output_tokens == len(r1.text.split())
    assert r1.text != r2.text
    assert cap.backend == "stub" and cap.model == "stub"


def test_text_only_prompts_get_usable_answers():
    cap = make_captioner(CaptionerConfig(backend="stub"))
    summ, label = cap.caption(
        [
            build_request("summarize@v1", text="one two three four five six seven", max_words=3),
            build_request("topic_label@v1", text="How to change a tyre"),
        ]
    )
    assert summ.status == "ok" and summ.text == "one two three"
    assert label.status == "ok" and label.text in ("tutorial", "howto", "encyclopedic", "design", "other")


def test_bad_requests_become_error_results_in_place():
    cap = make_captioner(CaptionerConfig(backend="stub"))
    good = build_request("image_caption@v1", images=(jpg(),))
    results = cap.caption(
        [
            good,
            build_request("change_caption@v1", images=(jpg(),)),  # one frame short
            build_request("image_caption@v1", images=(b"\x00not an image",)),
            build_request("summarize@v1"),  # no text
            good,
        ]
    )
    assert [r.status for r in results] == ["ok", "error", "error", "error", "ok"]
    assert "expects 2 image" in results[1].error
    assert "does not decode" in results[2].error
    assert "'text'" in results[3].error


def test_token_limit_truncates_and_error_every_fails_some():
    cap = make_captioner(CaptionerConfig(backend="stub", engine_args={"error_every": 3}))
    reqs = [build_request("summarize@v1", text=f"w{i} " * 20, max_words=20, max_tokens=5) for i in range(30)]
    results = cap.caption(reqs)
    errors = [r for r in results if r.status == "error"]
    assert 0 < len(errors) < 30
    assert all(r.status == "truncated" and r.output_tokens == 5 for r in results if r.status != "error")
    assert [r.status for r in cap.caption(reqs)] == [r.status for r in results]
