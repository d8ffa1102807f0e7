"""The pipeline contract and the one runner, proved on a toy pipeline registered here: a fourth pipeline needs
nothing but this module's NAME, CONFIG, FLAGS, list_inputs and build_stages."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from braid_cli import braid, shard_members
from samples import make_sample

from captioners.base import CaptionerConfig
from pipelines.commands import run as runner
from pipelines.core.inputs import list_inputs as list_files
from pipelines.core.progress import Progress
from pipelines.core.sections import CaptionConfig, RunConfig
from pipelines.core.stage import Stage, fail
from pipelines.registry import PIPELINES, register_pipeline

NAME = "toy"
DESCRIPTION = "toy pipeline: .toy text files -> one sample each"
INPUT_HELP = ".toy files or folders"


@dataclass(frozen=True)
class StepConfig:
    """frames: images per sample (changes outputs). flaky_file: while this file exists, 'flaky' inputs fail
    as a caption server error would (retryable)."""

    frames: int = 2
    flaky_file: str = ""


@dataclass(frozen=True)
class ToyConfig:
    run: RunConfig = field(default_factory=lambda: RunConfig(executor="local", chunk_size=4))
    captioner: CaptionerConfig = field(default_factory=lambda: CaptionerConfig(backend="stub", model="stub"))
    caption: CaptionConfig = field(default_factory=CaptionConfig)
    step: StepConfig = field(default_factory=StepConfig)

    @classmethod
    def tiny(cls) -> ToyConfig:
        return cls()


CONFIG = ToyConfig
FLAGS = {"frames": ("step.frames", int, "images per sample")}


def list_inputs(specs: list[str], cfg: ToyConfig) -> list[dict]:
    return list_files(specs, (".toy",))


def _read(batch: list[dict], cfg: StepConfig) -> list[dict]:
    out = []
    for rec in batch:
        text = Path(rec["uri"]).read_text()
        if text.startswith("bad"):
            out.append(fail(rec, "read", "unreadable", "not a toy file"))
        elif text.startswith("flaky") and cfg.flaky_file and Path(cfg.flaky_file).exists():
            out.append(fail(rec, "read", "captioner_error", "HTTP 503 from the caption server"))
        else:
            out.append({**rec, "sample": make_sample(key=rec["id"], n_images=cfg.frames, caption=text.strip())})
    return out


def build_stages(cfg: ToyConfig) -> list[Stage]:
    return [Stage("read", _read, cfg.step, batch_size=2)]


@pytest.fixture(autouse=True)
def toy_registered():
    register_pipeline(NAME, __name__)
    yield
    PIPELINES.pop(NAME, None)


def _inputs(root: Path, n: int, extra: dict | None = None) -> Path:
    d = root / "in"
    d.mkdir(exist_ok=True)
    for i in range(n):
        (d / f"doc{i:03d}.toy").write_text(f"caption number {i}")
    for name, text in (extra or {}).items():
        (d / name).write_text(text)
    return d


def test_a_registered_pipeline_gets_the_shared_flags_and_runs(tmp_path):
    d = _inputs(tmp_path, 5, {"broken.toy": "bad bytes"})
    code, out, err = braid(NAME, str(d), "--out", str(tmp_path / "o"), "--frames", "3")
    assert code == 0, err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert (summary["inputs"], summary["written"], summary["failed"]) == (6, 5, 1)
    assert out.startswith("braid toy: 6 inputs: 5 written, 0 filtered, 1 failed")
    assert "failed: unreadable 1" in out
    manifest = [json.loads(x) for p in (tmp_path / "o" / "manifest").glob("*.jsonl") for x in p.read_text().splitlines()]
    assert all(r["uri"].startswith(str(d)) for r in manifest)  # every record names its input
    assert {r["retryable"] for r in manifest if r["status"] == "failed"} == {False}
    # --help names every shared flag and the pipeline's own, each with its default
    import argparse

    parser = argparse.ArgumentParser(prog="braid toy")
    runner.configure(parser, sys.modules[__name__])
    helptext = parser.format_help()
    for flag in ("--limit", "--dry-run", "--overwrite", "--caption-batch-size", "--caption-concurrency", "--executor",
                 "--ray-address", "--preset", "--set", "--config", "--frames"):
        assert flag in helptext, flag
    assert "(default: 2)" in helptext and "(default: 8)" in helptext


def test_limit_and_dry_run(tmp_path):
    d = _inputs(tmp_path, 6)
    out = tmp_path / "o"
    code, text, _ = braid(NAME, str(d), "--out", str(out), "--dry-run", "--limit", "4",
                           "--set", "captioner.api_key=sk-dryrun-secret-123")
    assert code == 0 and not out.exists()  # nothing written
    listed = [ln for ln in text.splitlines() if ln and not ln.startswith("#") and "\t" in ln]
    assert len(listed) == 4 and "doc000.toy" in listed[0]
    assert "sk-dryrun-secret-123" not in text
    import yaml

    cfg = yaml.safe_load(text.split("effective config:\n", 1)[1])
    assert cfg["step"]["frames"] == 2 and cfg["run"]["out_dir"] == str(out)
    code, _, _ = braid(NAME, str(d), "--out", str(out), "--limit", "4")
    assert code == 0 and json.loads((out / "summary.json").read_text())["inputs"] == 4


def test_config_show_round_trips_through_config(tmp_path):
    code, text, _ = braid("config", "show", NAME)
    assert code == 0
    cfg_file = tmp_path / "toy.yaml"
    cfg_file.write_text(text.replace("frames: 2", "frames: 1"))
    d = _inputs(tmp_path, 2)
    code, _, err = braid(NAME, str(d), "--out", str(tmp_path / "o"), "--config", str(cfg_file))
    assert code == 0, err
    assert all(not name.endswith(".001.jpg") for name in shard_members(tmp_path / "o"))  # one image per sample


def test_input_that_matches_nothing_stops_before_work_with_exit_2(tmp_path):
    code, _, err = braid(NAME, str(tmp_path / "nothing-*.toy"), "--out", str(tmp_path / "o"))
    assert code == 2 and "matches nothing" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = braid(NAME, str(empty), "--out", str(tmp_path / "o"))
    assert code == 2 and "matches nothing" in err


def test_every_input_failed_exits_1(tmp_path):
    d = _inputs(tmp_path, 0, {"a.toy": "bad", "b.toy": "bad too"})
    code, out, _ = braid(NAME, str(d), "--out", str(tmp_path / "o"))
    assert code == 1 and "2 failed" in out


def test_changed_settings_are_refused_unless_overwrite(tmp_path):
    d = _inputs(tmp_path, 3)
    out = tmp_path / "o"
    assert braid(NAME, str(d), "--out", str(out))[0] == 0
    # how a run goes may change freely
    assert braid(NAME, str(d), "--out", str(out), "--caption-concurrency", "2", "--num-cpus", "1")[0] == 0
    code, _, err = braid(NAME, str(d), "--out", str(out), "--frames", "1")
    assert code == 2 and "step.frames: 2 -> 1" in err and "--overwrite" in err
    assert any(n.endswith(".001.jpg") for n in shard_members(out))  # the refused run changed nothing
    code, _, err = braid(NAME, str(d), "--out", str(out), "--frames", "1", "--overwrite")
    assert code == 0, err
    names = shard_members(out)
    assert names and not any(n.endswith(".001.jpg") for n in names)  # only the new run's samples remain


def test_secrets_never_reach_the_output(tmp_path, monkeypatch):
    d = _inputs(tmp_path, 2)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("captioner:\n  api_key: sk-from-config-file-4242\n")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-environment-7777")
    out = tmp_path / "o"
    code, text, err = braid(NAME, str(d), "--out", str(out), "--config", str(cfg),
                             "--set", "captioner.base_url=http://user:pw-in-url-5555@127.0.0.1:9/v1")
    assert code == 0, err
    code, text2, err2 = braid(NAME, str(d), "--out", str(out), "--set", "captioner.api_key=sk-from-set-flag-9999")
    for secret in ("sk-from-config-file-4242", "sk-from-environment-7777", "pw-in-url-5555", "sk-from-set-flag-9999"):
        for p in out.rglob("*"):
            if p.is_file():
                assert secret.encode() not in p.read_bytes(), (secret, p)
        assert secret not in text + err + text2 + err2


def test_retryable_failures_run_again_and_end_as_a_clean_run(tmp_path):
    d = _inputs(tmp_path, 3, {"flaky1.toy": "flaky one", "flaky2.toy": "flaky two"})
    flag = tmp_path / "server-down"
    flag.write_text("503")
    out = tmp_path / "o"
    args = [NAME, str(d), "--out", str(out), "--set", f"step.flaky_file={flag}"]
    code, text, _ = braid(*args)
    assert code == 0 and "2 failed" in text
    failed = [json.loads(x) for p in (out / "manifest").glob("*.jsonl") for x in p.read_text().splitlines()]
    assert sum(1 for r in failed if r["status"] == "failed" and r["retryable"]) == 2
    code, text, _ = braid(*args, "--no-retry-failed")
    assert "2 failed" in text and "0 retried" in text
    flag.unlink()  # the server recovers
    code, text, _ = braid(*args)
    assert code == 0 and "5 written, 0 filtered, 0 failed (2 retried" in text
    clean = tmp_path / "clean"
    assert braid(NAME, str(d), "--out", str(clean), "--set", f"step.flaky_file={flag}")[0] == 0
    assert shard_members(out) == shard_members(clean)  # same samples, same bytes


def test_a_second_run_on_the_same_out_is_refused_while_the_first_holds_it(tmp_path):
    d = _inputs(tmp_path, 2)
    out = tmp_path / "o"
    holder = subprocess.Popen([sys.executable, "-c", ("import sys, time; sys.path.insert(0, '.'); "
                               "from pipelines.core.lock import OutputLock; "
                               f"l = OutputLock({str(out)!r}); l.acquire(); print('held', flush=True); time.sleep(30)")],
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = braid(NAME, str(d), "--out", str(out))
        assert code == 3 and f"pid {holder.pid}" in err and "in use" in err
        assert not (out / "summary.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # the killed holder's lock is recognised as stale and taken over
    code, _, err = braid(NAME, str(d), "--out", str(out))
    assert code == 0, err
    assert not (out / ".lock").exists()


def test_two_runs_started_together_write_each_sample_once(tmp_path):
    d = _inputs(tmp_path, 24)
    out = tmp_path / "o"
    root = Path(__file__).parents[2]
    code = ("import sys; sys.path[:0] = ['.', 'tests']; import tests.pipelines.test_runner as t; "
            "from pipelines.registry import register_pipeline; register_pipeline('toy', t.__name__); "
            f"from pipelines.commands.cli import main; sys.exit(main(['toy', {str(d)!r}, '--out', {str(out)!r}]))")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in results)
    assert codes in ([0, 0], [0, 3]), results  # the second waits out nothing: it is refused, or runs after
    samples = [n for n in shard_members(out) if n.endswith(".json")]
    assert len(samples) == 24 and len(set(samples)) == 24


def test_progress_off_a_terminal_prints_whole_lines(tmp_path):
    d = _inputs(tmp_path, 4)
    stream = io.StringIO()
    out = tmp_path / "o"
    cfg = runner.make_config(sys.modules[__name__], overrides={"run.out_dir": str(out)})
    with Progress(out, [f"x{i}" for i in range(4)], NAME, interval_s=0.05, stream=stream):
        runner.run_job(sys.modules[__name__], [str(d)], cfg)
        time.sleep(0.3)
    lines = stream.getvalue().splitlines()
    assert lines and all(ln.startswith("braid toy: ") and "inputs done" in ln and "ETA" in ln for ln in lines)
    assert "\r" not in stream.getvalue()
    times = json.loads((out / "stage_times.json").read_text())["stages"]
    assert set(times) == {"read"} and times["read"]["records"] == 4


def test_a_full_disk_is_one_sentence_and_the_run_resumes(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mnt)], capture_output=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"tmpfs cannot be mounted here: {r.stderr.decode().strip()}")
    try:
        d = _inputs(tmp_path, 0)
        for i in range(40):  # about 40 KB of JPEG per sample: the disk fills part-way
            (d / f"big{i:02d}.toy").write_text(f"caption {i}")
        out = mnt / "o"
        code, _, err = braid(NAME, str(d), "--out", str(out), "--frames", "8",
                              "--set", "run.max_samples_per_shard=2")
        assert code == 4 and "cannot write to" in err and "Traceback" not in err
        subprocess.run(["mount", "-o", "remount,size=8m", str(mnt)], check=True)
        code, _text, err = braid(NAME, str(d), "--out", str(out), "--frames", "8", "--set", "run.max_samples_per_shard=2")
        assert code == 0, err
        assert json.loads((out / "summary.json").read_text())["written"] == 40
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _slow_setup_stage(batch: list[dict], cfg, state) -> list[dict]:
    for rec in batch:
        if "hang" in rec["id"]:
            time.sleep(30)
    return [{**rec, "sample": make_sample(key=rec["id"])} for rec in batch]


def test_set_up_stages_get_the_time_limit_too(tmp_path):
    from pipelines.core.executor import run_pipeline
    from pipelines.core.stage import new_record

    stage = Stage("caption", _slow_setup_stage, None, setup=lambda cfg: object(), batch_size=4)
    recs = [new_record(f"r{i}") for i in range(3)] + [new_record("hang-1")]
    run = RunConfig(out_dir=str(tmp_path / "o"), executor="local", task_time_limit_s=1.0)
    t0 = time.monotonic()
    s = run_pipeline([stage], recs, run, "toy")
    assert time.monotonic() - t0 < 10  # the hanging record cost its limit, not 30 s
    assert (s["written"], s["failed"], s["by_error_kind"]) == (3, 1, {"TimeLimitExceeded": 1})


def test_samples_keep_no_credentials_from_signed_urls():
    from dataclasses import replace

    from pipelines.core.sink import scrub_sample
    from schemas import ImageSegment

    signed = "https://bucket.s3.amazonaws.com/v.mp4?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=deadbeef99&part=2"
    s = make_sample()
    s = replace(s, source=replace(s.source, uri=signed),
                segments=tuple(replace(g, provenance={"url": "https://user:hunter22@cdn.example/a.jpg?token=tok123"})
                               if isinstance(g, ImageSegment) else g for g in s.segments))
    clean = scrub_sample(s)
    text = repr(clean)
    for secret in ("AKIAEXAMPLE", "deadbeef99", "hunter22", "tok123"):
        assert secret not in text
    assert clean.source.uri.startswith("https://bucket.s3.amazonaws.com/v.mp4?") and "part=2" in clean.source.uri


def test_a_prompt_file_is_loaded_before_any_work_and_a_bad_one_stops_it(tmp_path):
    d = _inputs(tmp_path, 1)
    bad = tmp_path / "bad.yaml"
    bad.write_text("- id: my_caption\n  version: 1\n  text: 'Say {what}'\n")  # no token budget
    code, _, err = braid(NAME, str(d), "--out", str(tmp_path / "o"), "--set", f"caption.prompts_file={bad}")
    assert code == 2 and "prompts_file" in err and "Traceback" not in err and not (tmp_path / "o").exists()
    good = tmp_path / "good.yaml"
    good.write_text("- id: my_caption\n  version: 2\n  text: 'Describe the change in {n} words'\n  max_tokens: 20\n")
    code, _, err = braid(NAME, str(d), "--out", str(tmp_path / "o"), "--set", f"caption.prompts_file={good}")
    assert code == 0, err
    from captioners.prompts import get_prompt

    assert get_prompt("my_caption@v2").max_tokens == 20
