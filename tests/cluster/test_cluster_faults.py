"""Faults on a real two-node Ray cluster: a lost node, a killed caption actor, a SIGKILLed driver,
records that break time or memory limits. Every run must account for every input, and what it
writes must equal a clean run's output: same keys, same sample bytes, no duplicates."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from localcluster import Driver

from schemas import iter_members, load_manifest
from schemas.writer import is_complete

N = 24


def shard_contents(out: Path) -> dict[str, dict[str, bytes]]:
    """key -> members of every sample in complete shards; fails on a key written twice."""
    got: dict[str, dict[str, bytes]] = {}
    for tar in sorted(out.glob("*.tar")):
        if not is_complete(tar):
            continue
        for key, members in iter_members(tar):
            assert key not in got, f"sample {key} written twice"
            got[key] = members
    return got


def written_ids(out: Path) -> list[str]:
    return [i for i, r in load_manifest(out).items() if r["status"] == "written"] if (out / "manifest").exists() else []


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """The clean run: the same job, in-process, no faults."""
    root = tmp_path_factory.mktemp("reference")
    d = Driver(None, root / "out", root / "ctl", "--n", str(N), "--render-delay", "0", "--caption-delay", "0")
    summary = d.finish(timeout=120)
    assert summary["written"] == N
    got = shard_contents(root / "out")
    assert len(got) == N
    return got


def assert_same_as_reference(out: Path, reference: dict, n: int = N) -> None:
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["inputs"], summary["written"], summary["failed"]) == (n, n, 0), summary
    got = shard_contents(out)
    want = {k: v for k, v in reference.items() if any(f"in-{i:03d}" in v["json"].decode() for i in range(n))}
    assert sorted(got) == sorted(want)
    assert got == want


def job_workers(cluster) -> list[int]:
    """Worker processes on the cluster still running a job's stage (not idle workers, not agents)."""
    busy = []
    for name in cluster.nodes:
        for pid in cluster.node_pids(name):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            # stage tasks and actors, the shard writers; Ray Data's own long-lived actors do not count
            if title.startswith("ray::") and any(w in title for w in ("MapBatches", "MapWorker", "Write")):
                busy.append(pid)
    return busy


@pytest.mark.timeout(150)
def test_driver_sigkill_then_rerun_finishes_the_rest(cluster, driver_factory, reference, tmp_path):
    out, ctl = tmp_path / "out", tmp_path / "ctl"
    first = driver_factory(cluster, out, ctl, "--n", str(N))
    first.wait_for(lambda: len(written_ids(out)) >= 4, 90, "a first complete shard")
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(timeout=10)
    done_before = set(written_ids(out))
    assert 4 <= len(done_before) < N, "the driver must die mid-job"
    # Ray reaps a dead driver's workers; a rerun must not race the old run's last writes
    end = time.time() + 30
    while job_workers(cluster) and time.time() < end:
        time.sleep(0.2)
    assert not job_workers(cluster), "the killed driver's workers were not reaped"

    second = driver_factory(cluster, out, ctl, "--n", str(N))
    summary = second.finish(timeout=90)
    assert summary["resumed_inputs"] >= len(done_before)
    assert_same_as_reference(out, reference)
    attempts = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert attempts[0]["pending"] == N and attempts[1]["pending"] <= N - len(done_before)


@pytest.mark.timeout(120)
def test_killed_caption_actor_has_its_batch_retried(cluster, driver_factory, reference, tmp_path):
    cluster.ensure_node("node2")
    out, ctl = tmp_path / "out", tmp_path / "ctl"
    n = 16
    d = driver_factory(cluster, out, ctl, "--n", str(n), "--caption-delay", "0.5")

    def in_flight():
        started, done = {}, set()
        for e in d.events():
            if e["what"] == "caption-start":
                started[(e["pid"], tuple(e["ids"]))] = e
            elif e["what"] == "caption-done":
                done.add((e["pid"], tuple(e["ids"])))
        # not the first batch: the kill must land in the middle of the job
        late = [k for k in started if k not in done and len(started) >= 2]
        return late[0] if late else None

    pid, ids = d.wait_for(in_flight, 90, "a caption batch in flight")
    os.kill(pid, signal.SIGKILL)
    d.finish(timeout=90)
    assert_same_as_reference(out, reference, n)
    redone = [e for e in d.events() if e["what"] == "caption-done" and tuple(e["ids"]) == ids]
    assert redone and all(e["pid"] != pid for e in redone), "the killed actor's batch was not retried elsewhere"
    assert len(list(ctl.glob("caption-*.pid"))) >= 2, "no new caption actor was started"


@pytest.mark.timeout(120)
def test_records_over_time_or_memory_limit_fail_and_the_run_goes_on(cluster, driver_factory, tmp_path):
    out, ctl = tmp_path / "out", tmp_path / "ctl"
    n = 8
    d = driver_factory(cluster, out, ctl, "--n", str(n), "--hang", "in-003", "--hog", "in-005",
                       "--time-limit", "3", "--memory-limit", "300", "--caption-delay", "0.1")
    summary = d.finish(timeout=100)
    assert (summary["written"], summary["failed"]) == (n - 2, 2), summary
    recs = load_manifest(out)
    assert recs["in-003"]["status"] == "failed" and recs["in-003"]["error_kind"] == "TimeLimitExceeded"
    assert recs["in-003"]["stage"] == "render" and "3 s" in recs["in-003"]["message"]
    assert recs["in-005"]["status"] == "failed" and recs["in-005"]["error_kind"] == "MemoryLimitExceeded"
    assert sorted(written_ids(out)) == sorted(f"in-{i:03d}" for i in range(n) if i not in (3, 5))


@pytest.mark.timeout(150)
def test_losing_the_second_node_mid_job_still_accounts_for_every_input(cluster, driver_factory, reference,
                                                                          tmp_path):
    cluster.ensure_node("node2")
    out, ctl = tmp_path / "out", tmp_path / "ctl"
    n = 16
    d = driver_factory(cluster, out, ctl, "--n", str(n))

    def node2_working():
        on_node2 = set(cluster.node_pids("node2"))
        starts = [e for e in d.events() if e["what"].endswith("-start") and e["pid"] in on_node2]
        return starts and len(written_ids(out)) < n - 4

    d.wait_for(node2_working, 90, "work running on the second node")
    cluster.kill_node("node2")
    d.finish(timeout=120)
    assert_same_as_reference(out, reference, n)
