"""Stage 3, assemble: the sample of each unit that passed every step, built by its generator and validated."""

from __future__ import annotations

from pipelines.core.stage import fail
from pipelines.reasoning_aug.generators import BY_NAME
from schemas import SampleError, validate


def assemble_units(batch: list[dict], cfg) -> list[dict]:
    out = []
    for u in batch:
        try:
            sample = BY_NAME[u["gen"]].assemble(u, cfg)
            validate(sample)
        except SampleError as e:
            out.append(fail(u, "assemble", "invalid_sample", str(e)))
            continue
        out.append({"id": u["id"], "input": u["input"], "status": "ok", "sample": sample})
    return out
