"""Captioners: one interface (``caption(requests) -> results``), backends chosen by configuration.

    from captioners import CaptionerConfig, make_captioner, build_request
    cap = make_captioner(CaptionerConfig(backend="openai", base_url="http://gpu-node:8000/v1"), cache_dir=out)
    results = cap.caption([build_request("change_caption@v1", images=(frame0, frame1))])

Backends: ``openai`` (any OpenAI-compatible server, e.g. ``vllm serve``), ``vllm`` (in-process engine),
``hf`` (transformers in-process), ``stub`` (deterministic stand-in for tests). Heavy libraries are
imported only by the backend that is built.
"""

from __future__ import annotations

from pathlib import Path

from captioners.base import Captioner, CaptionerConfig, CaptionerConfigError, CaptionRequest, CaptionResult, info
from captioners.prompts import PROMPTS, Prompt, get_prompt, match_choice

__all__ = [
    "PROMPTS",
    "CaptionRequest",
    "CaptionResult",
    "Captioner",
    "CaptionerConfig",
    "CaptionerConfigError",
    "Prompt",
    "build_request",
    "get_prompt",
    "info",
    "make_captioner",
    "match_choice",
]


def make_captioner(cfg: CaptionerConfig, cache_dir: Path | str | None = None) -> Captioner:
    """Build the configured backend; with ``cfg.cache`` and a ``cache_dir``, behind the request cache.

    Raises ``CaptionerConfigError`` (one sentence) before any work when the backend cannot start.
    """
    if cfg.backend == "stub":
        from captioners.stub import StubCaptioner as cls
    elif cfg.backend == "hf":
        from captioners.hf import HFCaptioner as cls
    elif cfg.backend == "vllm":
        from captioners.vllm_engine import VLLMCaptioner as cls
    elif cfg.backend == "openai":
        from captioners.openai_http import OpenAICaptioner as cls
    else:  # CaptionerConfig already refuses other names
        raise CaptionerConfigError(f"unknown captioner backend {cfg.backend!r}")
    captioner = cls(cfg)
    if cfg.cache and cache_dir is not None:
        from captioners.cache import CACHE_FILE, CachedCaptioner, RequestCache

        try:
            cache = RequestCache(Path(cache_dir) / CACHE_FILE)
        except Exception as e:  # noqa: BLE001  sqlite3 errors and OSError both mean: this directory cannot hold it
            captioner.close()
            raise CaptionerConfigError(f"cannot open the request cache in {cache_dir}: {e}") from None
        captioner = CachedCaptioner(captioner, cache)
    return captioner


def build_request(prompt_id: str, images=(), max_tokens: int | None = None, **variables) -> CaptionRequest:
    """A request for a registered prompt with its own token budget unless ``max_tokens`` is given."""
    prompt = get_prompt(prompt_id)
    return CaptionRequest(
        prompt_id=prompt_id,
        variables=variables,
        images=tuple(images),
        max_tokens=prompt.max_tokens if max_tokens is None else max_tokens,
    )
