"""Torch on one thread for the tests that run models: the CI machine has two shared cores and oversubscription
there costs tens of times the work. A conftest imports ``one_thread`` to apply it to its folder."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def one_thread():
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
