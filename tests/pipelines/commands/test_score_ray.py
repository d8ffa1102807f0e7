"""``braid score --executor ray`` on a real local Ray instance with a real tiny checkpoint trained on real shards:
the rows of an in-process run, one model per actor, and every sample accounted for when scoring workers die
or the driver is killed (the next run scores only what is missing)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipelines.commands.cli import main

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run folder, three shards of 16 clips each, a truncated copy of the second) of the tiny preset."""
    from test_score_filter import train_on_clips

    root = tmp_path_factory.mktemp("score_ray")
    run, shards = train_on_clips(root, 48, 20)
    (root / "bad").mkdir()
    (root / "bad" / "truncated.tar").write_bytes(shards[1].read_bytes()[:5000])
    return run, [*shards, root / "bad" / "truncated.tar"]


def _rows(path: Path) -> dict[tuple[str, str], dict]:
    import pyarrow.parquet as pq

    return {(r["shard"], r["key"]): r for r in pq.read_table(path).to_pylist()}


def _same_rows(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for k, w in want.items():
        g = got[k]
        assert (g["status"], g["kind"], g["source"], g["note"], g["n_tokens"]) == (
            w["status"], w["kind"], w["source"], w["note"], w["n_tokens"]), k
        for col in ("score", "ce", "mse"):
            assert g[col] == (None if w[col] is None else pytest.approx(w[col], rel=1e-5, abs=1e-7)), (k, col)
        assert g["text_ce"] == pytest.approx(w["text_ce"], rel=1e-5) and g["image_mse"] == pytest.approx(
            w["image_mse"], rel=1e-5), k


@pytest.fixture(scope="module")
def local_rows(trained, tmp_path_factory):
    run, shards = trained
    out = tmp_path_factory.mktemp("local") / "scores.parquet"
    assert main(["score", *map(str, shards), "--checkpoint", str(run), "--out", str(out), "--device", "cpu"]) == 0
    return _rows(out)


@pytest.mark.timeout(300)
def test_ray_scores_the_rows_of_local(trained, local_rows, ray_local, tmp_path, capsys):
    run, shards = trained
    out = tmp_path / "scores.parquet"
    assert main(["score", *map(str, shards), "--checkpoint", str(run), "--out", str(out), "--executor", "ray",
                 "--batch-size", "5"]) == 0
    got = _rows(out)
    _same_rows(got, local_rows)
    scored = [r for r in got.values() if r["status"] == "scored"]
    assert len(scored) >= 48 and not any(r["retryable"] for r in got.values())
    assert any(r["status"] == "failed" and r["key"] == "" and "truncated" in r["note"] for r in got.values())
    assert not out.with_name("scores.parquet.parts").exists()
    # a configuration the cluster cannot hold is refused before any work
    capsys.readouterr()
    assert main(["score", *map(str, shards), "--checkpoint", str(run), "--out", str(tmp_path / "x.parquet"),
                 "--executor", "ray", "--actors", "2"]) == 2
    assert "at most half" in capsys.readouterr().err and not (tmp_path / "x.parquet").exists()


def _score_actor_pids(parts: Path) -> set[int]:
    """Pids of the scoring actors started so far: each writes its stage clock, named by its pid, once loaded."""
    pids = set()
    for p in (parts / "stage_times").glob("*.json"):
        try:
            if "score" in json.loads(p.read_text()):
                pids.add(int(p.name.rsplit("-", 2)[-2]))
        except (OSError, ValueError):
            continue
    return pids


SLOW = ",".join(f"{t / 50:g}" for t in range(1, 50))  # 49 timesteps: a batch of 16 takes seconds


@pytest.fixture
def no_kept_ray_errors():
    """Ray Data logs each lost batch's error with its traceback, and pytest's log capture keeps those records
    (and through them the dead actor's handle, so its restarted actor holds a CPU of the session's Ray)
    until the test ends: they are not emitted here."""
    lg = logging.getLogger("ray.data._internal.execution.streaming_executor_state")
    level = lg.level
    lg.setLevel(logging.CRITICAL)
    yield
    lg.setLevel(level)


@pytest.mark.timeout(300)
def test_samples_of_a_dead_actor_fail_and_the_next_run_scores_them(trained, ray_local, no_kept_ray_errors, tmp_path,
                                                                    capsys):
    """The scoring actor is killed while it scores its first batch, and its restart too while it scores that
    batch again: the batch ends ``failed`` (retryable, with the reason), the others are scored; the next run
    scores only those."""
    run, shards = trained
    out = tmp_path / "scores.parquet"
    parts = out.with_name("scores.parquet.parts")
    args = ["score", *map(str, shards), "--checkpoint", str(run), "--out", str(out), "--executor", "ray",
            "--batch-size", "16", "--timesteps", SLOW]
    killed: list[int] = []

    def kill_actors():
        deadline = time.time() + 120
        while len(killed) < 2 and time.time() < deadline:
            for pid in _score_actor_pids(parts) - set(killed):
                time.sleep(0.3)  # loaded and into its batch
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.005)

    killer = threading.Thread(target=kill_actors)
    killer.start()
    try:
        assert main(args) == 0
    finally:
        killer.join()
    assert len(killed) == 2
    assert "lost with a scoring worker" in capsys.readouterr().err
    first = _rows(out)
    samples = {k for k in first if k[1]}
    assert len(samples) == 48 + sum(1 for s in first.values() if "truncated" in s["shard"] and s["key"])
    lost = {k for k, r in first.items() if r["status"] == "failed" and r["retryable"]}
    assert lost and all("died" in first[k]["note"] for k in lost)
    assert all(first[k]["status"] == "scored" for k in samples - lost)

    assert main(args) == 0
    assert f"{len(lost)} scored now" in capsys.readouterr().out  # only the lost samples were scored again
    second = _rows(out)
    assert second.keys() == first.keys() and all(second[k]["status"] == "scored" for k in samples)
    assert all(second[k]["score"] == first[k]["score"] for k in samples - lost)
    deadline = time.time() + 20  # the dead actor's restart went with its pool: the cluster has its CPUs back
    while ray_local.available_resources().get("CPU", 0) < ray_local.cluster_resources()["CPU"] and time.time() < deadline:
        time.sleep(0.2)
    assert ray_local.available_resources().get("CPU", 0) == ray_local.cluster_resources()["CPU"]


@pytest.mark.timeout(300)
def test_killed_ray_run_resumes_with_the_rest(trained, local_rows, ray_local, tmp_path, capsys):
    """The driver of a Ray run (its own process group, with its own local Ray) is killed with SIGKILL once
    some rows are written; the next run keeps those rows and scores only the rest."""
    run, shards = trained
    out = tmp_path / "scores.parquet"
    parts = out.with_name("scores.parquet.parts")
    cmd = [sys.executable, "-m", "pipelines.commands.cli", "score", *map(str, shards), "--checkpoint", str(run),
           "--out", str(out), "--executor", "ray", "--batch-size", "2", "--num-cpus", "2"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not list(parts.glob("part-*.parquet")) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    written = {k for f in parts.glob("part-*.parquet") for k in _rows(f)}
    assert written and not out.exists()  # killed midway

    capsys.readouterr()
    assert main(["score", *map(str, shards), "--checkpoint", str(run), "--out", str(out), "--executor", "ray",
                 "--batch-size", "8"]) == 0
    said = capsys.readouterr().out
    n_final, n_samples = sum(1 for k in written if k[1]), sum(1 for k in local_rows if k[1])
    assert f"{n_final} already scored" in said and f"{n_samples - n_final} scored now" in said
    _same_rows(_rows(out), local_rows)


def test_actor_pool_is_sized_from_the_cluster():
    """One scoring actor per GPU holding that GPU; without GPUs, CPU actors (one by default, at most half the
    CPUs); settings the cluster cannot hold are configuration errors."""
    from pipelines.commands.score_run import ScoreJob, build_stages
    from pipelines.core.sections import RunConfig
    from schemas.config import ConfigError

    ray_run = RunConfig(executor="ray")
    job = ScoreJob("ckpt", None, "auto", (0.5,), 0)
    score = build_stages(job, ray_run, {"CPU": 64.0, "GPU": 4.0}, 16, None)[-1]
    assert (score.num_gpus, score.concurrency, score.batch_size, score.cfg.device) == (1.0, 4, 16, "cuda")
    assert build_stages(job, ray_run, {"CPU": 64.0, "GPU": 4.0}, 16, 2)[-1].concurrency == 2
    cpu = build_stages(job, ray_run, {"CPU": 8.0}, 16, None)[-1]
    assert (cpu.num_gpus, cpu.concurrency, cpu.cfg.device) == (0.0, 1, "cpu")
    assert build_stages(job, ray_run, {"CPU": 8.0}, 16, 4)[-1].concurrency == 4
    cpu_only = ScoreJob("ckpt", "cpu", "auto", (0.5,), 0)  # --device cpu keeps a GPU cluster's GPUs free
    assert build_stages(cpu_only, ray_run, {"CPU": 8.0, "GPU": 2.0}, 16, None)[-1].num_gpus == 0.0
    with pytest.raises(ConfigError, match="at most half"):
        build_stages(job, ray_run, {"CPU": 8.0}, 16, 5)
    with pytest.raises(ConfigError, match="no GPUs"):
        build_stages(ScoreJob("ckpt", "cuda", "auto", (0.5,), 0), ray_run, {"CPU": 8.0}, 16, None)
