"""The executor: same results in-process and on a real local Ray, parts, per-record failures, accounting,
and configuration errors before any work."""

from __future__ import annotations

import json
import re
import sys

import pytest
from samples import jpeg_bytes

from pipelines.core.executor import RunConfig, plan_cpus, run_pipeline
from pipelines.core.stage import Stage, drop, new_record, split
from schemas import ImageSegment, Sample, Source, TextSegment, load_manifest, read_samples
from schemas.config import ConfigError

# ------------------------------------------------------------------ a small pipeline with every kind of outcome
# input n: split into n % 4 parts (0 parts: the input is filtered as a whole); part 1 of each input is
# filtered, part 2 of input 7 raises inside the stage (only that record fails); the rest is captioned by an
# actor stage with a setup step and written.

def expand(batch, cfg):
    out = []
    for rec in batch:
        n = int(rec["id"].split("-")[1])
        out.extend(split(rec, [{"n": n, "part": p} for p in range(n % 4)]))
    return out


def decide(batch, cfg):
    out = []
    for rec in batch:
        if rec["part"] == 1:
            out.append(drop(rec, "decide", "odd_part", scores={"part": 1.0}))
            continue
        if rec["n"] == 7 and rec["part"] == 2:
            raise RuntimeError("cannot decode part 2 of input 7")
        out.append({**rec, "frame": jpeg_bytes((rec["n"] * 20 % 256, rec["part"] * 60, 90), size=(16, 12))})
    return out


def load_captioner(cfg):
    return {"prefix": cfg["prefix"]}


def caption(batch, cfg, state):
    out = []
    for rec in batch:
        segs = (ImageSegment(rec["frame"], "jpg", 16, 12, role="frame"),
                TextSegment(f"{state['prefix']} {rec['id']}", role="caption", loss=True))
        out.append({**rec, "sample": Sample(key=rec["id"], kind="video", segments=segs, source=Source(f"mem://{rec['input']}"))})
    return out


STAGES = [
    Stage("expand", expand, batch_size=3),
    Stage("decide", decide, batch_size=4),
    Stage("caption", caption, cfg={"prefix": "a frame of"}, setup=load_captioner, batch_size=2, concurrency=(1, 2)),
    Stage("caption_again", caption, cfg={"prefix": "a frame of"}, setup=load_captioner, batch_size=5, concurrency=1),
]
INPUTS = 12


def _run(tmp_path, executor, **kw):
    run = RunConfig(out_dir=str(tmp_path / executor), executor=executor, max_samples_per_shard=4, chunk_size=5, **kw)
    return run_pipeline(STAGES, [new_record(f"in-{i}") for i in range(INPUTS)], run, "test"), tmp_path / executor


def _outcomes(out):
    recs = load_manifest(out)
    return {i: {k: r.get(k) for k in ("status", "stage", "reason", "error_kind", "key")} for i, r in recs.items()}


def _samples(out):
    return {s.key: (json.dumps(s.to_json(), sort_keys=True), [im.data for im in s.images])
            for s in read_samples(sorted(out.glob("*.tar")))}


def test_local_run_accounts_for_every_input(tmp_path):
    summary, out = _run(tmp_path, "local")
    assert summary["inputs"] == INPUTS
    assert summary["written"] + summary["filtered"] + summary["failed"] == INPUTS
    # n % 4 == 0 -> no parts -> filtered; otherwise part 0 is written, so the input counts as written
    assert (summary["written"], summary["filtered"], summary["failed"]) == (9, 3, 0)
    recs = load_manifest(out)
    assert recs["in-7_002"]["status"] == "failed" and recs["in-7_002"]["stage"] == "decide"
    assert recs["in-7_002"]["error_kind"] == "RuntimeError" and "input 7" in recs["in-7_002"]["message"]
    assert recs["in-7_000"]["status"] == "written"  # its batch-mates went on
    assert recs["in-6_001"] == {**recs["in-6_001"], "status": "filtered", "reason": "odd_part", "scores": {"part": 1.0}}
    assert recs["in-4"]["status"] == "split" and recs["in-4"]["children"] == []
    assert summary["by_error_kind"] == {"RuntimeError": 1} and summary["by_reason"] == {"odd_part": 6}
    samples = _samples(out)
    assert summary["samples_written"] == len(samples) == 11
    assert json.loads(samples["in-11_002"][0])["segments"][1]["text"] == "a frame of in-11_002"


@pytest.mark.timeout(180)
def test_ray_gives_the_same_results_as_in_process(tmp_path, ray_local):
    import ray.cloudpickle
    import samples

    # the stage functions live in the tests, not in an installed module: ship them by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.cloudpickle.register_pickle_by_value(samples)
    local, out_local = _run(tmp_path, "local")
    remote, out_ray = _run(tmp_path, "ray")
    assert ray_local.is_initialized()  # a Ray the executor did not start is left running
    for k in ("inputs", "written", "filtered", "failed", "samples_written", "by_reason", "by_error_kind", "parts"):
        assert remote[k] == local[k], k
    assert _outcomes(out_ray).keys() == _outcomes(out_local).keys()
    for i, rec in _outcomes(out_local).items():
        assert {k: v for k, v in _outcomes(out_ray)[i].items()} == rec, i
    assert _samples(out_ray) == _samples(out_local)

    # a Ray run that died before one shard's stats file: resume on Ray redoes exactly that shard's records
    lost = min(out_ray.glob("shard-*_stats.json"))
    lost_keys = json.loads(lost.read_text())["keys"]
    lost.unlink()
    resumed, _ = _run(tmp_path, "ray")
    assert resumed["attempt"] == 1 and resumed["resumed_inputs"] == INPUTS - len({k.split("_")[0] for k in lost_keys})
    assert _samples(out_ray) == _samples(out_local)
    assert _outcomes(out_ray) == _outcomes(out_local)


def test_actor_pools_never_take_every_cpu():
    # two set-up stages, one autoscaling to 2 actors, on 2 CPUs: actors hold at most 1, tasks keep the rest
    per_stage, writer = plan_cpus(STAGES, 2.0)
    held = per_stage[2] * 2 + per_stage[3] * 1
    assert held <= 1.0 and per_stage[0] <= 2.0 - held and writer <= 2.0 - held
    per_stage, _ = plan_cpus([Stage("gpu", caption, setup=load_captioner, num_cpus=1, concurrency=1)], 64.0)
    assert per_stage == [1]  # a large cluster keeps the declared CPUs


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: RunConfig(executor="spark"), "executor must be 'ray' or 'local'"),
        (lambda: RunConfig(max_samples_per_shard=0), "must be positive"),
        (lambda: run_pipeline([Stage("a", expand, batch_size=0)], [new_record("x")], RunConfig(executor="local",
                              out_dir=_OUT[0]), "t"), "batch_size must be a positive integer"),
        (lambda: run_pipeline([Stage("a", expand), Stage("a", expand)], [new_record("x")],
                              RunConfig(executor="local", out_dir=_OUT[0]), "t"), "used twice"),
        (lambda: run_pipeline([Stage("a", expand)], [new_record("x"), new_record("x")],
                              RunConfig(executor="local", out_dir=_OUT[0]), "t"), "appears more than once"),
        (lambda: run_pipeline([Stage("a", expand, num_gpus=1)], [new_record("x")],
                              RunConfig(executor="local", out_dir=_OUT[0]), "t"), "has no setup step"),
    ],
)
def test_bad_configuration_fails_before_any_work_with_one_sentence(tmp_path, make, words):
    _OUT[0] = str(tmp_path / "out")
    with pytest.raises(ConfigError) as e:
        make()
    msg = str(e.value)
    assert words in msg and "\n" not in msg
    assert not (tmp_path / "out").exists()


_OUT = [""]


@pytest.mark.timeout(120)
def test_gpu_stage_without_gpus_on_local_ray_fails_before_any_work(tmp_path, ray_local):
    stage = Stage("caption", caption, cfg={"prefix": "x"}, setup=load_captioner, num_gpus=1)
    with pytest.raises(ConfigError, match="needs 1 GPU"):
        run_pipeline([stage], [new_record("x")], RunConfig(out_dir=str(tmp_path / "out")), "t")
    assert not (tmp_path / "out").exists()


RAY_SCRIPT = r'''
import sys
import ray
from pipelines.core.executor import RunConfig, run_pipeline
from pipelines.core.stage import Stage, new_record
from schemas import Sample, Source, TextSegment

def make(batch, cfg):
    return [{**r, "sample": Sample(key=r["id"], kind="web", segments=(TextSegment(r["id"]),), source=Source("mem://x"))}
            for r in batch]

def setup(cfg):
    return object()

def keep(batch, cfg, state):
    return batch

stages = [Stage("make", make), Stage("a", keep, setup=setup, concurrency=2), Stage("b", keep, setup=setup)]
s = run_pipeline(stages, [new_record(f"i-{i}") for i in range(30)],
                 RunConfig(out_dir=sys.argv[1], executor="ray", num_cpus=2, max_samples_per_shard=10), "t")
print("WRITTEN", s["written"], "SHARDS", s["shards"], "RAY_STILL_UP", ray.is_initialized())
'''


@pytest.mark.timeout(200)
def test_ray_run_started_by_the_executor_is_quiet_does_not_deadlock_and_shuts_ray_down(tmp_path):
    """Two actor pools on 2 CPUs (the deadlock of feasibility.md section 4), as a user's driver runs it."""
    import os
    import subprocess

    script = tmp_path / "job.py"
    script.write_text(RAY_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "out")], capture_output=True, text=True,
                       timeout=180, env=env, check=False)
    # each write task gets at least max_samples_per_shard records, so 30 records make 3 or 4 shards
    assert re.search(r"WRITTEN 30 SHARDS [34] RAY_STILL_UP False", r.stdout), r.stdout + r.stderr[-3000:]
    for noise in ("falling back to serialize as pickled", "logging_progress", "Starting execution", "deprecated"):
        assert noise not in r.stderr, noise
