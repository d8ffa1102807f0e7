"""Which failures a later run retries: transient ones (network, timeouts, 429/5xx, caption server errors,
lost tasks) are retryable; everything about the input itself (corrupt, unreadable, refused, not found) is
permanent. Every failed manifest record carries ``retryable`` from ``is_retryable``."""

from __future__ import annotations

RETRYABLE_KINDS = frozenset({
    "timeout", "connection_error", "dns_error", "fetch_error", "http_429", "http_5xx", "server_error",
    "captioner_error", "caption_error", "incomplete", "ProcessDied", "task_lost", "worker_died",
    "ConnectionError", "TimeoutError", "OSError",
})


def is_retryable(error_kind: str | None) -> bool:
    """True for transient failures; unknown kinds (a bug, a bad input) are permanent."""
    if not error_kind:
        return False
    return error_kind in RETRYABLE_KINDS or error_kind.startswith(("http_5", "HTTP 5"))
