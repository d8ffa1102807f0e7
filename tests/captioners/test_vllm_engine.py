"""The vllm backend: a real in-process vllm.LLM engine on the tiny model, checked against the hf backend."""

from __future__ import annotations

import pytest
from captioner_helpers import jpg, mixed_requests, png

from captioners import CaptionerConfig, CaptionerConfigError, build_request, make_captioner

pytestmark = pytest.mark.slow


@pytest.mark.timeout(600)
def test_engine_matches_hf_and_fails_bad_images_alone(vllm_captioner, hf_captioner):
    reqs = mixed_requests()
    reqs.insert(3, build_request("image_caption@v1", images=(png((2, 600)),), max_tokens=8))  # aspect ratio 300
    reqs.insert(6, build_request("image_caption@v1", images=(jpg()[:40],), max_tokens=8))  # cut-off JPEG
    got = vllm_captioner.caption(reqs)
    want = hf_captioner.caption(reqs)
    assert len(got) == len(reqs)
    assert [r.status for r in got] == [r.status for r in want]
    assert {r.status for r in got} == {"ok", "truncated", "error"}
    assert got[3].status == "error" and "vLLM rejected the request" in got[3].error
    assert got[6].status == "error" and "does not decode" in got[6].error
    fine = [i for i, r in enumerate(got) if r.status != "error"]
    # same weights, same processor, greedy float32: the same tokens whichever engine runs them
    assert [got[i].text for i in fine] == [want[i].text for i in fine]
    assert [got[i].output_tokens for i in fine] == [want[i].output_tokens for i in fine]
    assert [got[i].prompt_tokens for i in fine] == [want[i].prompt_tokens for i in fine]
    assert vllm_captioner.backend == "vllm"


def test_missing_model_folder_is_a_config_error_before_the_engine_starts(tmp_path):
    with pytest.raises(CaptionerConfigError, match="does not exist"):
        make_captioner(CaptionerConfig(backend="vllm", model=str(tmp_path / "nope")))
