"""Command tests (scoring, spot checks, inference load models) run torch on one thread."""

from __future__ import annotations

from torch_threads import one_thread  # noqa: F401 - an autouse fixture for this folder
