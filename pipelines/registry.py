"""The pipelines ``braid`` runs, by command name. A pipeline is a module with the contract described in
ARCHITECTURE.md ("Add a pipeline"); adding one is a folder plus one line here (or ``register_pipeline``)."""

from __future__ import annotations

import importlib
from types import ModuleType

PIPELINES: dict[str, str] = {
    "video": "pipelines.video_interleave.pipeline",
    "web": "pipelines.web_interleave.pipeline",
    "reason": "pipelines.reasoning_aug.pipeline",
}

REQUIRED = ("NAME", "DESCRIPTION", "CONFIG", "list_inputs", "build_stages")


def register_pipeline(name: str, module: str) -> None:
    PIPELINES[name] = module


def load_pipeline(name: str) -> ModuleType:
    mod = importlib.import_module(PIPELINES[name])
    missing = [a for a in REQUIRED if not hasattr(mod, a)]
    if missing:
        raise TypeError(f"pipeline module {mod.__name__} lacks {', '.join(missing)}")
    return mod
