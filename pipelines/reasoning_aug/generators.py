"""The generators by name: each module has ``candidates(src, cfg)``, ``STEPS`` and ``assemble(unit, cfg)``."""

from __future__ import annotations

from pipelines.reasoning_aug import concept, edit, t2i

BY_NAME = {"t2i": t2i, "edit": edit, "concept": concept}
