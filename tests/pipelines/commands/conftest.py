"""Command tests run torch on one thread: the CI machine has two shared cores and oversubscription there costs
tens of times the work (scoring, spot checks and inference load models)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread():
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
