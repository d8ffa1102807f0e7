"""The openai backend against a real loopback HTTP server that fails in the ways real servers fail."""

from __future__ import annotations

import time

import pytest
from captioner_helpers import free_port, jpg

from captioners import CaptionerConfig, CaptionerConfigError, build_request, make_captioner

pytestmark = pytest.mark.timeout(120)


def _cfg(url: str, **kw) -> CaptionerConfig:
    base = {"backend": "openai", "base_url": url, "timeout_s": 5.0, "max_retries": 2, "retry_backoff_s": 0.05}
    return CaptionerConfig(**{**base, **kw})


def _docs(n: int) -> list:
    return [build_request("summarize@v1", text=f"document number {i:03d}", max_tokens=8) for i in range(n)]


@pytest.mark.timeout(60)
def test_unreachable_server_is_a_config_error_before_any_work():
    url = f"http://127.0.0.1:{free_port()}/v1"
    t0 = time.monotonic()
    with pytest.raises(CaptionerConfigError, match=r"cannot reach the captioning server at http://127\.0\.0\.1"):
        make_captioner(_cfg(url))
    assert time.monotonic() - t0 < 15


def test_missing_url_and_unknown_model_are_config_errors(fake_server, monkeypatch):
    monkeypatch.delenv("BRAID_OPENAI_BASE_URL", raising=False)
    with pytest.raises(CaptionerConfigError, match="BRAID_OPENAI_BASE_URL"):
        make_captioner(CaptionerConfig(backend="openai"))
    with pytest.raises(CaptionerConfigError, match="fake-vlm"):
        make_captioner(_cfg(fake_server.url, model="other-model"))
    monkeypatch.setenv("BRAID_OPENAI_BASE_URL", fake_server.url.removesuffix("/v1"))
    cap = make_captioner(CaptionerConfig(backend="openai"))  # URL from the environment, /v1 added
    assert cap.model == "fake-vlm" and cap.caption(_docs(1))[0].status == "ok"
    cap.close()


@pytest.mark.timeout(60)
def test_results_in_order_with_bounded_concurrency_and_reused_connections(fake_server):
    fake_server.delay_s = 0.05
    cap = make_captioner(_cfg(fake_server.url, concurrency=3))
    results = cap.caption(_docs(24))
    assert [r.text for r in results] == [f"re: document number {i:03d}" for i in range(24)]
    assert all(r.status == "ok" and r.output_tokens == 3 and r.latency_s > 0 for r in results)
    assert fake_server.max_inflight <= 3
    assert len(fake_server.peers) <= 3  # 24 requests over at most 3 kept-alive connections
    cap.close()


@pytest.mark.timeout(60)
def test_429_and_5xx_are_retried_then_succeed(fake_server):
    fake_server.fail_first = [503, 429, 502]
    cap = make_captioner(_cfg(fake_server.url, concurrency=1, max_retries=3))
    (res,) = cap.caption(_docs(1))
    assert res.status == "ok" and fake_server.posts == 4
    cap.close()


@pytest.mark.timeout(60)
def test_persistent_5xx_gives_error_after_retries(fake_server):
    fake_server.fail_first = [500] * 10
    cap = make_captioner(_cfg(fake_server.url, concurrency=1, max_retries=2))
    (res,) = cap.caption(_docs(1))
    assert res.status == "error" and "gave up after 3 attempts" in res.error and "HTTP 500" in res.error
    assert fake_server.posts == 3
    cap.close()


@pytest.mark.timeout(60)
def test_a_rejected_request_is_not_retried_and_fails_alone(fake_server):
    fake_server.reject = "number 002"
    cap = make_captioner(_cfg(fake_server.url, concurrency=2))
    results = cap.caption(_docs(4))
    assert [r.status for r in results] == ["ok", "ok", "error", "ok"]
    assert "HTTP 400" in results[2].error and fake_server.posts == 4
    cap.close()


@pytest.mark.timeout(60)
def test_server_killed_mid_batch_loses_nothing_and_does_not_hang(fake_server):
    fake_server.die_after = 5
    fake_server.delay_s = 0.02
    cap = make_captioner(_cfg(fake_server.url, concurrency=2, max_retries=2))
    t0 = time.monotonic()
    results = cap.caption(_docs(40))
    elapsed = time.monotonic() - t0
    assert len(results) == 40 and elapsed < 30
    ok = [i for i, r in enumerate(results) if r.status == "ok"]
    assert len(ok) == 5 and all(results[i].text == f"re: document number {i:03d}" for i in ok)
    failed = [r for r in results if r.status == "error"]
    assert len(failed) == 35 and all("connection error" in r.error for r in failed)
    # the requests the death hit were retried before giving up; once the server is known dead, later
    # requests fail on their first attempt instead of backing off one by one
    assert any("gave up after 3 attempts" in r.error for r in failed)
    assert any("gave up after 1 attempt:" in r.error for r in failed)
    cap.close()


@pytest.mark.timeout(60)
def test_slow_responses_time_out_into_errors(fake_server):
    fake_server.delay_s = 3.0
    cap = make_captioner(_cfg(fake_server.url, timeout_s=0.4, max_retries=1, concurrency=2))
    t0 = time.monotonic()
    results = cap.caption(_docs(2))
    assert time.monotonic() - t0 < 2.5 * 2  # two attempts of 0.4 s each per request, concurrently
    assert all(r.status == "error" and "no response within 0.4 s" in r.error for r in results)
    cap.close()


@pytest.mark.parametrize("kind", ["json", "shape"])
def test_malformed_responses_become_errors(fake_server, kind):
    fake_server.malformed = kind
    cap = make_captioner(_cfg(fake_server.url))
    (res,) = cap.caption(_docs(1))
    assert res.status == "error" and "malformed response" in res.error
    cap.close()


def test_length_finish_is_truncated_and_images_travel_as_data_urls(fake_server):
    fake_server.finish_reason = "length"
    cap = make_captioner(_cfg(fake_server.url))
    res = cap.caption(
        [
            build_request("change_caption@v1", images=(jpg((1, 1, 1)), jpg((250, 1, 1)))),
            build_request("image_caption@v1", images=(b"broken",)),
        ]
    )
    assert res[0].status == "truncated"
    assert res[1].status == "error" and "does not decode" in res[1].error
    assert fake_server.posts == 1  # the undecodable image never went out
    cap.close()
