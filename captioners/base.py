"""The one captioner interface: ``caption(requests) -> results``, batched, one result per request, in order.

| CaptionRequest field | meaning                                                                  |
|----------------------|--------------------------------------------------------------------------|
| images               | list of PIL images or encoded image bytes (may be empty: text-only)      |
| prompt_id            | a named, versioned prompt from ``captioners.prompts`` (e.g. ``change_caption@v1``) |
| variables            | values for the prompt template's fields                                  |
| max_tokens           | output token limit                                                       |
| temperature, top_p, seed | sampling parameters (temperature 0 = greedy)                         |

| CaptionResult field  | meaning                                                                  |
|----------------------|--------------------------------------------------------------------------|
| text                 | the model's text ("" on error)                                           |
| status               | ``ok``, ``truncated`` (the token limit cut it) or ``error``              |
| error                | the reason, when status is ``error``                                     |
| prompt_tokens, output_tokens | token counts (0 when unknown)                                    |
| latency_s            | seconds for this request (its share of a batch for batched backends)     |
| cached               | served from the request cache                                            |

A backend never raises for a bad request or a dead server mid-batch: that request gets an
``error`` result. Configuration problems (unknown backend, unreachable server at start, missing
model folder) raise ``CaptionerConfigError`` before any work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class CaptionerConfigError(ValueError):
    """The captioner cannot start: one clear sentence."""


@dataclass(frozen=True)
class CaptionRequest:
    prompt_id: str
    variables: dict = field(default_factory=dict)
    images: tuple = ()  # PIL.Image.Image or bytes
    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class CaptionResult:
    text: str
    status: str  # ok | truncated | error
    error: str | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False


@dataclass(frozen=True)
class CaptionerConfig:
    """Which backend and model caption, and how.

    backend: ``hf`` (transformers in-process), ``openai`` (an OpenAI-compatible server such as
      ``vllm serve``), ``vllm`` (in-process vLLM engine), or ``stub`` (deterministic stand-in for tests).
    model: local folder or hub id (hf, vllm); served model name (openai).
    base_url / api_key: the server (openai); default from BRAID_OPENAI_BASE_URL / OPENAI_API_KEY.
    device: for hf (``cpu``, ``cuda``, ``cuda:1``).
    dtype: weights dtype for hf and vllm: ``auto`` (hf: float32 on CPU, bfloat16 on GPU; vllm: its own
      choice from the model), ``float32``, ``bfloat16`` or ``float16``.
    batch_size: requests per generate call (hf, vllm); concurrency: parallel HTTP requests (openai).
    timeout_s, max_retries: per HTTP request (openai): seconds before giving up on one attempt, and how
      many more attempts after the first on connection errors, timeouts, 429 and 5xx.
    retry_backoff_s: first back-off between attempts (openai); doubles each retry, with jitter.
    engine_args: passed through to ``vllm.LLM`` (tensor_parallel_size, max_model_len, gpu_memory_utilization, limit_mm_per_prompt, ...).
    cache: keep a request cache in the output directory (``make_captioner(cfg, cache_dir)``).
    """

    backend: str = "hf"
    model: str = ""
    base_url: str | None = None
    api_key: str | None = None
    device: str = "cpu"
    dtype: str = "auto"
    batch_size: int = 8
    concurrency: int = 8
    timeout_s: float = 60.0
    max_retries: int = 3
    retry_backoff_s: float = 0.5
    engine_args: dict = field(default_factory=dict)
    cache: bool = True

    def __post_init__(self):
        if self.backend not in ("hf", "openai", "vllm", "stub"):
            raise CaptionerConfigError(f"backend must be hf, openai, vllm or stub, not {self.backend!r}")
        for name in ("batch_size", "concurrency"):
            if getattr(self, name) < 1:
                raise CaptionerConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise CaptionerConfigError(f"dtype must be auto, float32, bfloat16 or float16, not {self.dtype!r}")
        if self.timeout_s <= 0 or self.max_retries < 0 or self.retry_backoff_s < 0:
            raise CaptionerConfigError("timeout_s must be positive; max_retries and retry_backoff_s not negative")


class Captioner(Protocol):
    backend: str
    model: str

    def caption(self, requests: list[CaptionRequest]) -> list[CaptionResult]: ...

    def close(self) -> None: ...


def is_transient(result: CaptionResult) -> bool:
    """An error a later run may not meet: the server was down, overloaded or too slow for every attempt (the
    HTTP backend's "gave up after N attempts"), as opposed to a request the model or server rejected."""
    return result.status == "error" and (result.error or "").startswith("gave up after")


def info(captioner: Any) -> dict:
    return {"backend": captioner.backend, "model": captioner.model}
