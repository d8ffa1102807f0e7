"""The real videos end to end with the tiny captioner (hf backend), in-process and through local Ray;
the shards pass validation; the command line maps flags and refuses bad configuration."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest

from pipelines.commands.cli import main
from pipelines.commands.run import run_job
from pipelines.core.inputs import VIDEO_EXTS, list_inputs
from pipelines.video_interleave import pipeline as video
from pipelines.video_interleave.config import VideoConfig
from schemas import load_manifest, read_samples, validate


def check_shards(out: Path) -> list:
    shards = sorted(out.glob("*.tar"))
    assert shards
    if importlib.util.find_spec("pipelines.commands.validate") is not None:
        assert main(["validate", str(out)]) == 0
    samples = list(read_samples(shards))
    for s in samples:
        validate(s)
        imgs = s.images
        assert s.kind == "video" and len(imgs) >= 2 and s.source.span[0] < s.source.span[1]
        assert imgs[0].understanding and not imgs[0].generation and all(i.generation for i in imgs[1:])
        changes = [t for t in s.texts if t.role == "change"]
        assert len(changes) == len(imgs) - 1 and all(t.loss and t.status in ("ok", "truncated") for t in changes)
        assert [seg.role for seg in s.segments if seg.role in ("frame", "change")] == \
            ["frame", *["change", "frame"] * (len(imgs) - 1)]
        times = s.source.extra["frame_times"]
        assert times == sorted(times) and s.source.span[0] <= times[0] and times[-1] < s.source.span[1]
        assert s.captioner.prompt_ids == ("change_caption@v1",)
    return samples


def run_video(specs: list[str], cfg: VideoConfig) -> dict:
    return run_job(video, specs, cfg)


def real_cfg(out: Path, tiny_vlm: Path, executor: str) -> VideoConfig:
    cfg = VideoConfig.tiny()
    return replace(cfg, run=replace(cfg.run, out_dir=str(out), executor=executor, num_cpus=2),
                   captioner=replace(cfg.captioner, backend="hf", model=str(tiny_vlm)),
                   caption=replace(cfg.caption, batch_size=16))


@pytest.mark.timeout(240)
def test_real_videos_in_process_with_tiny_captioner_and_resume(shared_data, tiny_vlm, tmp_path):
    inputs = list_inputs([str(shared_data / "videos")], VIDEO_EXTS)
    assert len(inputs) == 7
    out = tmp_path / "out"
    summary = run_video([str(shared_data / "videos")], real_cfg(out, tiny_vlm, "local"))
    assert summary["inputs"] == 7 and summary["written"] + summary["filtered"] + summary["failed"] == 7
    assert summary["failed"] == 0 and summary["written"] >= 6
    samples = check_shards(out)
    assert {s.captioner.backend for s in samples} == {"hf"}
    assert len(samples) == summary["samples_written"] >= 10
    friday = [s for s in samples if s.source.uri.endswith("mdn_friday.mp4")]
    assert any(t.role == "subtitle" and not t.loss for s in friday for t in s.texts)
    recs = load_manifest(out)
    for i in (r["id"] for r in inputs):  # every clip of every video is accounted for
        assert recs[i]["status"] == "split"
        assert all(recs[c]["status"] in ("written", "filtered") for c in recs[i]["children"])
    shards = sorted(p.name for p in out.glob("*.tar"))
    again = run_video([str(shared_data / "videos")], real_cfg(out, tiny_vlm, "local"))
    assert again["resumed_inputs"] == 7 and sorted(p.name for p in out.glob("*.tar")) == shards


@pytest.mark.timeout(240)
def test_real_videos_through_local_ray(shared_data, tiny_vlm, ray_local, tmp_path):
    out = tmp_path / "ray"
    summary = run_video([str(shared_data / "videos")], real_cfg(out, tiny_vlm, "ray"))
    assert summary["inputs"] == 7 and summary["failed"] == 0 and summary["written"] >= 6
    samples = check_shards(out)
    assert len(samples) == summary["samples_written"]
    assert len({s.key for s in samples}) == len(samples)


@pytest.mark.timeout(120)
def test_command_runs_synthetic_videos_with_stub_captioner(synth, tmp_path, capsys):
    out = tmp_path / "cli"
    listing = tmp_path / "list.jsonl"
    listing.write_text(json.dumps({"uri": str(synth["h264"][0]), "id": "scenes", "licence": "CC0"}) + "\n"
                       + json.dumps({"uri": str(tmp_path / "missing.mp4")}) + "\n")
    rc = main(["video", str(listing), "--out", str(out), "--preset", "tiny", "--captioner", "stub",
               "--executor", "local", "--frames-per-clip", "3", "--set", "quality.min_motion=0.02"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"] == 2 and summary["written"] == 1 and summary["failed"] == 1
    assert "1 written" in capsys.readouterr().out
    samples = check_shards(out)
    assert all(len(s.images) <= 3 and s.source.licence == "CC0" for s in samples)
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert runs[-1]["config"]["frames"]["frames_per_clip"] == 3


def test_command_refuses_bad_configuration(tmp_path, capsys):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    bad = [
        ["--captioner", "hf"],  # no model
        ["--captioner", "hf", "--model", str(tmp_path / "no" / "such")],
        ["--captioner", "openai"],  # no server
        ["--set", "frames.frames_per_clip=1"],
        ["--set", "nosuch.field=1"],
        ["--config", str(tmp_path / "missing.yaml")],
    ]
    for extra in bad:
        rc = main(["video", str(video), "--out", str(tmp_path / "o"), "--executor", "local", *extra])
        assert rc == 2, extra
        assert "configuration error" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before any work
