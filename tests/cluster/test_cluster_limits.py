"""pipelines.core.limits in-process: a record over the time or memory limit ends failed, the others go on."""

from __future__ import annotations

import os
import time

import pytest

from pipelines.core.limits import apply_limited
from pipelines.core.stage import Stage, new_record


def work(batch, cfg):
    out = []
    for rec in batch:
        if rec["id"] == "slow":
            time.sleep(60)
        if rec["id"] == "big":
            hoard = [bytearray(64 << 20) for _ in range(64)]  # 4 GiB
            assert hoard
        out.append({**rec, "pid": os.getpid()})
    return out


@pytest.mark.timeout(60)
def test_culprits_fail_with_the_limit_they_broke_and_the_rest_is_kept():
    stage = Stage("decode", work)
    batch = [new_record(i) for i in ("a", "slow", "b", "big", "c")]
    t0 = time.time()
    out = {r["id"]: r for r in apply_limited(stage, batch, time_s=2.0, memory_mb=256)}
    assert time.time() - t0 < 20
    assert [out[i]["status"] for i in ("a", "b", "c")] == ["ok"] * 3
    assert out["slow"]["status"] == "failed" and out["slow"]["error_kind"] == "TimeLimitExceeded"
    assert out["big"]["status"] == "failed" and out["big"]["error_kind"] == "MemoryLimitExceeded"
    assert out["big"]["stage"] == "decode" and "256 MiB" in out["big"]["message"]
    assert all(out[i]["pid"] != os.getpid() for i in ("a", "b", "c"))  # ran in a child


def test_without_limits_the_stage_runs_in_process():
    out = apply_limited(Stage("decode", work), [new_record("a")], time_s=None, memory_mb=None)
    assert out[0]["pid"] == os.getpid()
