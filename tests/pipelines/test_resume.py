"""Resume: a run killed with SIGKILL half-way and run again ends with the same samples as a clean run,
no duplicates, no losses; re-running a finished run rewrites nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from schemas import load_manifest, read_samples

# A pipeline run as its own process (so that it can be killed): a slow stage, small shards, parts and drops.
SCRIPT = r'''
import io, sys, time
from PIL import Image
from pipelines.core.executor import RunConfig, run_pipeline
from pipelines.core.stage import Stage, drop, new_record, split
from schemas import ImageSegment, Sample, Source, TextSegment

def expand(batch, cfg):
    out = []
    for rec in batch:
        n = int(rec["id"].split("-")[1])
        out.extend(split(rec, [{"n": n, "part": p} for p in range(1 + n % 2)]))
    return out

def build(batch, cfg):
    out = []
    for rec in batch:
        time.sleep(float(sys.argv[2]))
        if rec["n"] % 7 == 3:
            out.append(drop(rec, "build", "sevens"))
            continue
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (rec["n"] * 9 % 256, rec["part"] * 100, 50)).save(buf, "PNG")
        segs = (TextSegment(f"input {rec['n']} part {rec['part']}", role="body"),
                ImageSegment(buf.getvalue(), "png", 8, 8, role="frame"))
        out.append({**rec, "sample": Sample(key=rec["id"], kind="video", segments=segs, source=Source("mem://x"))})
    return out

run = RunConfig(out_dir=sys.argv[1], executor="local", max_samples_per_shard=4, chunk_size=3)
summary = run_pipeline([Stage("expand", expand, batch_size=3), Stage("build", build, batch_size=3)],
                       [new_record(f"in-{i}") for i in range(40)], run, "resume-test")
print("SUMMARY", summary["written"], summary["filtered"], summary["failed"])
'''


def _run(script, out, delay="0"):
    return subprocess.run([sys.executable, str(script), str(out), delay], capture_output=True, text=True, timeout=120, check=False)


def _contents(out: Path) -> dict:
    samples = list(read_samples(sorted(out.glob("*.tar"))))
    keys = [s.key for s in samples]
    assert len(keys) == len(set(keys)), "a key was written twice"
    return {s.key: (s.to_json(), [im.data for im in s.images]) for s in samples}


def _outcomes(out: Path) -> dict:
    return {i: (r["status"], r.get("reason")) for i, r in load_manifest(out).items()}


@pytest.mark.timeout(150)
def test_killed_run_resumes_to_the_clean_result_and_a_finished_run_rewrites_nothing(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert "SUMMARY" in _run(script, clean).stdout

    proc = subprocess.Popen([sys.executable, str(script), str(killed), "0.03"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 90
    while len(list(killed.glob("*_stats.json"))) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "summary.json").exists()
    done_before = {p.name: p.stat().st_mtime_ns for p in killed.glob("*.tar")}
    assert len(done_before) >= 3

    resumed = _run(script, killed)
    assert "SUMMARY" in resumed.stdout, resumed.stderr
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["resumed_inputs"] > 0 and summary["attempt"] == 1
    assert summary["written"] + summary["filtered"] + summary["failed"] == summary["inputs"] == 40
    assert _contents(killed) == _contents(clean)  # same keys, same sample contents, no duplicates
    assert _outcomes(killed) == _outcomes(clean)
    for name, mtime in done_before.items():  # shards completed before the kill were kept as they were
        if (killed / name.replace(".tar", "_stats.json")).exists():
            assert (killed / name).stat().st_mtime_ns == mtime

    files = {p.name: p.stat().st_mtime_ns for p in killed.rglob("*") if p.suffix in (".tar", ".jsonl")
             and p.name != "runs.jsonl"}
    again = _run(script, killed)
    assert "SUMMARY" in again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in killed.rglob("*") if p.suffix in (".tar", ".jsonl")
            and p.name != "runs.jsonl"} == files
    assert json.loads((killed / "summary.json").read_text())["resumed_inputs"] == 40
