"""Model tests run torch on one thread: the CI machine has two shared cores and oversubscription there
costs tens of times the work."""

from __future__ import annotations

import pytest
from mot_helpers import CAPTIONS
from torch_threads import one_thread  # noqa: F401 - an autouse fixture for this folder


@pytest.fixture
def tiny():
    """(model config, tokenizer, data config) for the tiny preset with a BPE fitted on the captions."""
    from model.data import DataConfig, TextTokenizer
    from model.mot import MoTConfig

    tok = TextTokenizer.fit([c + f" {i}" for c in CAPTIONS for i in range(3)], 300)
    return MoTConfig.preset("tiny").replace(vocab_size=tok.vocab_size), tok, DataConfig(max_tokens=512)
