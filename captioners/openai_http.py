"""The ``openai`` backend: any OpenAI-compatible chat-completions server (``vllm serve`` first of all).

One ``httpx.Client`` (connections reused) and a thread pool of ``concurrency`` workers; images go as
base64 data URLs. A request is retried with exponential back-off and jitter on connection errors,
timeouts, HTTP 429 (honouring ``Retry-After``) and 5xx; other HTTP errors (a 400 for an image the
server's processor rejects) and malformed responses are not retried. A request that still fails gets
an ``error`` result; ``caption`` never raises for it. Once a request has given up because the server
is unreachable, later requests try once without back-off until one succeeds again, so a dead server
fails a large batch in seconds rather than hours.

At start the server's ``/models`` is asked once: an unreachable server, a refused API key or a model
the server does not serve is a ``CaptionerConfigError`` before any work. Without a model name the
server's first model is used.
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from captioners.base import CaptionerConfig, CaptionerConfigError, CaptionRequest, CaptionResult
from captioners.inputs import Prepared, RequestError, data_url, error_result, prepare

_RETRY_STATUS = {429, 500, 502, 503, 504}


def resolve_base_url(cfg: CaptionerConfig) -> str:
    url = cfg.base_url or os.environ.get("BRAID_OPENAI_BASE_URL")
    if not url:
        raise CaptionerConfigError(
            "the openai backend needs a server URL: set captioner base_url or BRAID_OPENAI_BASE_URL"
        )
    url = url.rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CaptionerConfigError(f"server URL {url!r} must look like http://host:port/v1")
    return url if parts.path else url + "/v1"  # vLLM and most servers serve the API under /v1


class OpenAICaptioner:
    backend = "openai"

    def __init__(self, cfg: CaptionerConfig):
        import httpx

        self._httpx = httpx
        self.cfg = cfg
        self.base_url = resolve_base_url(cfg)
        api_key = cfg.api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        n = max(1, cfg.concurrency)
        self.client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(cfg.timeout_s, connect=min(cfg.timeout_s, 10.0)),
            limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
        )
        self._down = threading.Event()
        try:
            self.model = self._check_server(cfg.model)
        except CaptionerConfigError:
            self.client.close()
            raise
        self.pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="braid-openai")

    def _check_server(self, model: str) -> str:
        httpx = self._httpx
        try:
            r = self.client.get("/models", timeout=min(self.cfg.timeout_s, 10.0))
        except httpx.HTTPError as e:
            raise CaptionerConfigError(
                f"cannot reach the captioning server at {self.base_url} ({type(e).__name__}: {e})"
            ) from None
        if r.status_code in (401, 403):
            raise CaptionerConfigError(
                f"the server at {self.base_url} refused the API key (HTTP {r.status_code}); "
                "set captioner api_key or OPENAI_API_KEY"
            )
        served: list[str] = []
        if r.status_code == 200:
            try:
                served = [m["id"] for m in r.json()["data"]]
            except (ValueError, KeyError, TypeError):
                served = []
        if model and served and model not in served:
            raise CaptionerConfigError(f"the server at {self.base_url} serves {served}, not model {model!r}")
        if not model:
            if not served:
                raise CaptionerConfigError(f"the server at {self.base_url} lists no models; set captioner model")
            model = served[0]
        return model

    def caption(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        futures = [self.pool.submit(self._one, r) for r in requests]
        return [f.result() for f in futures]

    def _one(self, req: CaptionRequest) -> CaptionResult:
        started = time.perf_counter()
        try:
            prep = prepare(req)
            payload = self._payload(prep)
        except RequestError as e:
            return error_result(str(e), started)
        try:
            return self._send(payload, started)
        except Exception as e:  # noqa: BLE001  I/O boundary: whatever breaks, this request alone fails
            return error_result(f"request failed: {type(e).__name__}: {e}", started)

    def _payload(self, prep: Prepared) -> dict:
        messages = []
        for m in prep.messages:
            if isinstance(m["content"], str):
                messages.append(m)
                continue
            parts = []
            for c in m["content"]:
                if c["type"] == "image":
                    # the original bytes go as they are (decoding above only checked them)
                    parts.append({"type": "image_url", "image_url": {"url": data_url(prep.request.images[c["index"]])}})
                else:
                    parts.append(c)
            messages.append({"role": m["role"], "content": parts})
        req = prep.request
        return {
            "model": self.model,
            "messages": messages,
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "top_p": req.top_p,
            "seed": req.seed,
        }

    def _send(self, payload: dict, started: float) -> CaptionResult:
        httpx = self._httpx
        attempts = 1 if self._down.is_set() else self.cfg.max_retries + 1
        last = ""
        for attempt in range(attempts):
            wait = None
            unreachable = False
            try:
                r = self.client.post("/chat/completions", json=payload)
            except httpx.TimeoutException as e:
                last = f"no response within {self.cfg.timeout_s:g} s ({type(e).__name__})"
            except httpx.TransportError as e:
                last = f"connection error: {type(e).__name__}: {e}"
                unreachable = isinstance(e, httpx.ConnectError)
            else:
                if r.status_code == 200:
                    self._down.clear()
                    return _parse(r, started)
                last = f"HTTP {r.status_code}: {r.text[:300]}"
                if r.status_code not in _RETRY_STATUS:
                    return error_result(last, started)
                wait = _retry_after(r)
            if attempt + 1 < attempts:
                backoff = self.cfg.retry_backoff_s * (2**attempt) * (0.5 + random.random())
                time.sleep(min(wait if wait is not None else backoff, 60.0))
        if unreachable:
            self._down.set()
        tries = f"{attempts} attempt" + ("s" if attempts > 1 else "")
        return error_result(f"gave up after {tries}: {last}", started)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.client.close()


def _retry_after(r) -> float | None:
    try:
        return max(0.0, float(r.headers.get("retry-after", "")))
    except ValueError:
        return None


def _parse(r, started: float) -> CaptionResult:
    try:
        data = r.json()
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
        if not isinstance(text, str):
            raise TypeError("message content is not a string")
        usage = data.get("usage") or {}
        return CaptionResult(
            text=text.strip(),
            status="truncated" if choice.get("finish_reason") == "length" else "ok",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            latency_s=time.perf_counter() - started,
        )
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        return error_result(f"malformed response from the server ({type(e).__name__}: {e}): {r.text[:200]!r}", started)
