"""The hf backend on the tiny Qwen2-VL, loaded through AutoProcessor / AutoModelForImageTextToText."""

from __future__ import annotations

import pytest
from captioner_helpers import jpg, mixed_requests, png

from captioners import CaptionerConfig, CaptionerConfigError, build_request, make_captioner

pytestmark = pytest.mark.timeout(120)


@pytest.mark.timeout(300)
def test_batched_matches_one_at_a_time(hf_captioner):
    reqs = mixed_requests()
    batched = hf_captioner.caption(reqs)
    single = [hf_captioner.caption([r])[0] for r in reqs]
    assert [r.text for r in batched] == [r.text for r in single]  # left padding changes nothing
    assert [r.output_tokens for r in batched] == [r.output_tokens for r in single]
    assert [r.prompt_tokens for r in batched] == [r.prompt_tokens for r in single]
    for req, res in zip(reqs, batched):
        assert res.status in ("ok", "truncated") and res.prompt_tokens > 0
        # truncated exactly when the limit was reached without an end-of-sequence token
        assert (res.status == "truncated") == (res.output_tokens == req.max_tokens)
        assert res.output_tokens <= req.max_tokens
    assert {r.status for r in batched} == {"ok", "truncated"}
    assert batched[0].prompt_tokens > batched[5].prompt_tokens  # two frames cost more tokens than one image


@pytest.mark.timeout(300)
def test_rejected_and_broken_images_fail_alone(hf_captioner):
    good = mixed_requests()[:3]
    bad_ratio = build_request("image_caption@v1", images=(png((2, 600)),), max_tokens=8)  # aspect ratio 300
    broken = build_request("image_caption@v1", images=(jpg()[:40],), max_tokens=8)
    results = hf_captioner.caption([good[0], bad_ratio, good[1], broken, good[2]])
    assert [r.status for r in results].count("error") == 2
    assert (
        results[1].status == "error" and "processor rejected" in results[1].error and "aspect ratio" in results[1].error
    )
    assert results[3].status == "error" and "does not decode" in results[3].error
    assert [r.text for r in (results[0], results[2], results[4])] == [r.text for r in hf_captioner.caption(good)]


def test_missing_model_folder_is_a_config_error(tmp_path):
    with pytest.raises(CaptionerConfigError, match="does not exist"):
        make_captioner(CaptionerConfig(backend="hf", model=str(tmp_path / "nope")))
    with pytest.raises(CaptionerConfigError, match="dtype"):
        CaptionerConfig(backend="hf", model=str(tmp_path), dtype="int3")


@pytest.mark.timeout(300)
def test_sampling_is_seeded(hf_captioner):
    req = build_request("image_caption@v1", images=(jpg(),), max_tokens=8)
    hot = [type(req)(**{**req.__dict__, "temperature": 1.0, "seed": s}) for s in (1, 1, 2)]
    a, b, c = (hf_captioner.caption([r])[0].text for r in hot)
    assert a == b
    assert c != a or len(a) == 0
