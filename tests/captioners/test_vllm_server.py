"""The openai backend against a real vLLM OpenAI-compatible server on loopback (started once per session)."""

from __future__ import annotations

import pytest
from captioner_helpers import mixed_requests, png

from captioners import CaptionerConfig, build_request, make_captioner

pytestmark = pytest.mark.slow


@pytest.mark.timeout(600)
def test_openai_backend_on_vllm_server_matches_hf_and_caches(vllm_server, hf_captioner, tmp_path):
    reqs = mixed_requests()
    reqs.insert(2, build_request("image_caption@v1", images=(png((2, 600)),), max_tokens=8))  # aspect ratio 300
    cfg = CaptionerConfig(backend="openai", base_url=vllm_server, concurrency=4, timeout_s=120)
    cap = make_captioner(cfg, cache_dir=tmp_path)
    assert cap.model == "tiny-vlm"  # the served name, read from /v1/models
    got = cap.caption(reqs)
    want = hf_captioner.caption(reqs)
    assert [r.status for r in got] == [r.status for r in want]
    assert {r.status for r in got} == {"ok", "truncated", "error"}
    assert "HTTP 400" in got[2].error  # vLLM's processor refused the image; only this request failed
    fine = [i for i, r in enumerate(got) if r.status != "error"]
    assert [got[i].text for i in fine] == [want[i].text for i in fine]
    assert [got[i].output_tokens for i in fine] == [want[i].output_tokens for i in fine]
    assert [got[i].prompt_tokens for i in fine] == [want[i].prompt_tokens for i in fine]
    cap.close()

    again = make_captioner(cfg, cache_dir=tmp_path)  # a resumed run
    second = again.caption(reqs)
    again.close()
    assert [r.cached for r in second] == [r.status != "error" for r in got]
    assert [r.text for i, r in enumerate(second) if i in fine] == [got[i].text for i in fine]
