"""The braid command: help, and validate / stats / view exit statuses and messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bad_shards import EXPECTED, make_bad_shards
from samples import make_sample

from pipelines.commands.cli import main
from pipelines.core.executor import RunConfig, run_pipeline
from pipelines.core.stage import Stage, drop, fail, new_record

BRAID = str(Path(sys.executable).with_name("braid"))


def _braid(*args):
    return subprocess.run([BRAID, *args], capture_output=True, text=True, timeout=60, check=False)


def test_help_lists_the_commands():
    r = _braid("--help")
    assert r.returncode == 0
    for cmd in ("validate", "stats", "view"):
        assert f"    {cmd}" in r.stdout
    r = _braid("validate", "--help")
    assert r.returncode == 0 and "--max-pixels" in r.stdout


def test_validate_on_the_four_bad_kinds_exits_1_with_one_line_each_and_no_traceback(tmp_path):
    bad = make_bad_shards(tmp_path)
    r = _braid("validate", *(str(bad[k]) for k in EXPECTED))
    assert r.returncode == 1
    assert "Traceback" not in r.stdout + r.stderr
    for kind, words in EXPECTED.items():
        assert any(ln.startswith(str(bad[kind])) and words in ln for ln in r.stdout.splitlines()), kind
    assert _braid("validate", str(bad["good"])).returncode == 0


def _build(batch, cfg):
    out = []
    for rec in batch:
        n = int(rec["id"].split("-")[1])
        if n % 5 == 1:
            out.append(drop(rec, "build", "too_short", scores={"seconds": 0.5}))
        elif n % 5 == 2:
            out.append(fail(rec, "build", "DecodeError", "moov atom not found"))
        else:
            out.append({**rec, "sample": make_sample(rec["id"])})
    return out


@pytest.fixture
def run_dir(tmp_path):
    out = tmp_path / "run"
    run_pipeline([Stage("build", _build)], [new_record(f"v-{i}") for i in range(10)],
                 RunConfig(out_dir=str(out), executor="local"), "demo")
    return out


def test_stats_prints_the_summary_and_recomputes_it_without_summary_json(run_dir, capsys):
    assert main(["stats", str(run_dir)]) == 0
    text = capsys.readouterr().out
    for line in ("inputs          10", "written          6", "filtered         2", "failed           2",
                 "too_short", "DecodeError", "source    summary.json"):
        assert line in text, line
    (run_dir / "summary.json").unlink()
    assert main(["stats", str(run_dir), "--json"]) == 0
    recomputed = json.loads(capsys.readouterr().out)
    assert (recomputed["inputs"], recomputed["written"], recomputed["filtered"], recomputed["failed"]) == (10, 6, 2, 2)
    assert main(["stats", str(run_dir)]) == 0
    assert "recomputed from the manifest (summary.json is missing)" in capsys.readouterr().out


def test_stats_on_a_directory_without_a_run_exits_1(tmp_path, capsys):
    assert main(["stats", str(tmp_path)]) == 1
    assert "holds no Braid run" in capsys.readouterr().err
    assert main(["stats", str(tmp_path / "nope")]) == 1
    assert "is not a directory" in capsys.readouterr().err


def test_view_with_a_missing_shard_is_a_configuration_error(tmp_path, capsys):
    assert main(["view", str(tmp_path / "nope.tar"), "--out", str(tmp_path / "p.html")]) == 2
    assert "configuration error: no such shard" in capsys.readouterr().err
    assert not (tmp_path / "p.html").exists()
