"""The same contract for every pipeline (video, web, reason), through the one runner and the real stages:
accounting with the input's uri, resume that rewrites nothing, secrets nowhere under --out or in exports,
--limit, --dry-run, progress off a terminal, and caption concurrency on local Ray (one caption actor each)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from braid_cli import braid
from samples import make_sample

from pipelines.core.progress import stage_workers
from schemas import ShardWriter

ROOT = Path(__file__).resolve().parents[2]
PIPES = ("video", "web", "reason")


def _make_inputs(name: str, root: Path) -> tuple[list[str], list[str]]:
    """(input specs, extra flags) for a small run of pipeline ``name``."""
    if name == "video":
        from pipelines.video_interleave.synth import Scene, write_scenes

        d = root / "videos"
        write_scenes(d / "cuts.mp4", [Scene("moving", 36, 1), Scene("pan", 36, 2)], 24.0, (256, 144))
        write_scenes(d / "moving.mp4", [Scene("moving", 48, 3)], 24.0, (256, 144))
        return [str(d)], []
    if name == "web":
        from pipelines.web_interleave.synth import make_example_pages

        pages = make_example_pages(root / "pages", n_pages=2)
        return [str(p) for p in pages], ["--set", "filters.min_relevance=null"]
    shard_dir = root / "shards"
    with ShardWriter(shard_dir, "src") as w:
        for i in range(3):
            w.write(make_sample(key=f"clip-{i:03d}", n_images=3, caption=f"the ball moves left {i}"))
    return [str(p) for p in sorted(shard_dir.glob("*.tar"))], ["--kinds", "t2i,edit"]


def _common(out: Path) -> list[str]:
    return ["--out", str(out), "--preset", "tiny", "--executor", "local", "--captioner", "stub", "--model", "stub"]


def _manifest(out: Path) -> list[dict]:
    return [json.loads(x) for p in sorted((out / "manifest").glob("*.jsonl")) for x in p.read_text().splitlines()]


@pytest.mark.parametrize("name", PIPES)
def test_accounting_uri_and_resume(name, tmp_path):
    specs, extra = _make_inputs(name, tmp_path)
    out = tmp_path / "out"
    code, text, err = braid(name, *specs, *_common(out), *extra)
    assert code == 0, err
    s = json.loads((out / "summary.json").read_text())
    assert s["inputs"] >= 2 and s["written"] + s["filtered"] + s["failed"] == s["inputs"] and s["written"] >= 1
    assert text.startswith(f"braid {name}: {s['inputs']} inputs: {s['written']} written, ")
    recs = _manifest(out)
    assert recs and all(isinstance(r.get("uri"), str) and r["uri"] for r in recs), [r for r in recs if not r.get("uri")]
    assert (out / "cache").is_dir() or not any(out.glob("caption_cache"))  # one cache folder name
    times = json.loads((out / "stage_times.json").read_text())["stages"]
    assert len(times) >= 2 and all(t["seconds"] >= 0 for t in times.values())  # each stage its own entry
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    code, text, err = braid(name, *specs, *_common(out), *extra)
    assert code == 0, err
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")} == before  # nothing rewritten
    assert json.loads((out / "summary.json").read_text())["resumed_inputs"] == s["inputs"]


@pytest.mark.parametrize("name", PIPES)
def test_limit_and_dry_run(name, tmp_path):
    specs, extra = _make_inputs(name, tmp_path)
    out = tmp_path / "out"
    code, text, err = braid(name, *specs, *_common(out), *extra, "--dry-run")
    assert code == 0, err
    assert not out.exists() and "effective config:" in text and "captioner:" in text
    code, _, err = braid(name, *specs, *_common(out), *extra, "--limit", "1")
    assert code == 0, err
    assert json.loads((out / "summary.json").read_text())["inputs"] == 1


@pytest.mark.parametrize("name", PIPES)
def test_secrets_reach_neither_the_output_nor_the_exports(name, tmp_path, monkeypatch):
    specs, extra = _make_inputs(name, tmp_path)
    out = tmp_path / "out"
    cfg = tmp_path / "secret.yaml"
    cfg.write_text("captioner:\n  api_key: sk-config-file-0123456789\n")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-environment-0123456789")
    secrets = ["sk-config-file-0123456789", "sk-environment-0123456789", "sk-set-flag-0123456789"]
    code, t1, e1 = braid(name, *specs, *_common(out), *extra, "--config", str(cfg))
    assert code == 0, e1
    code, t2, e2 = braid(name, *specs, *_common(out), *extra, "--set", "captioner.api_key=sk-set-flag-0123456789")
    assert code == 0, e2
    exports = tmp_path / "exports"
    shards = [str(p) for p in sorted(out.glob("*.tar"))]
    for fmt in ("hf", "bagel", "omnicorpus"):
        code, _, err = braid("export", fmt, *shards, "--out", str(exports / fmt))
        assert code == 0, err
    for root in (out, exports):
        for p in root.rglob("*"):
            if p.is_file():
                data = p.read_bytes()
                assert not any(s.encode() in data for s in secrets), p
    assert not any(s in t1 + e1 + t2 + e2 for s in secrets)
    assert "***" in (out / "runs.jsonl").read_text()  # the key was there to mask


@pytest.mark.parametrize("name", PIPES)
def test_progress_off_a_terminal_is_whole_lines(name, tmp_path):
    specs, extra = _make_inputs(name, tmp_path)
    out = tmp_path / "out"
    code = (f"import sys; sys.path[:0] = ['tests']; from pipelines.commands.cli import main; "
            f"sys.exit(main({[name, *specs, *_common(out), *extra, '--set', 'run.progress_s=0.2']!r}))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith(f"braid {name}: ")]
    assert lines and all("inputs done" in ln and "ETA" in ln for ln in lines), r.stderr
    assert "\r" not in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("name", ("web", "reason"))
def test_caption_concurrency_two_gives_two_caption_actors(name, tmp_path, ray_local):
    specs, extra = _make_inputs(name, tmp_path)
    out = tmp_path / "out"
    common = [c if c != "local" else "ray" for c in _common(out)]
    code, _, err = braid(name, *specs, *common, *extra, "--caption-concurrency", "2")
    assert code == 0, err
    assert stage_workers(out, "caption") == 2
