"""Stages 1-7 on synthetic videos with known content: cuts, filters, crops, frame sampling, captions, assembly."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from video_scenes import SIZE

from captioners.base import CaptionResult
from pipelines.core.stage import apply_stage, new_record
from pipelines.video_interleave.caption import CaptionJob, caption_pairs
from pipelines.video_interleave.config import FrameConfig, ProbeConfig, VideoConfig
from pipelines.video_interleave.pipeline import analysis_stages
from pipelines.video_interleave.probe import probe_videos
from pipelines.video_interleave.shots import make_clips, split_shots
from pipelines.video_interleave.subtitles import parse_subtitles
from pipelines.video_interleave.synth import render_scene, write_frames


def run_analysis(path, cfg: VideoConfig | None = None) -> list[dict]:
    cfg = cfg or VideoConfig.tiny()
    batch = [new_record("v", uri=str(path), licence=None, meta={})]
    for st in analysis_stages(cfg):
        batch = apply_stage(st, batch)
    return batch


def scene_of(frame: int, cuts: list[int]) -> int:
    return int(np.searchsorted(cuts, frame, side="right")) - 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("codec", ["h264", "mp4v"])
def test_cuts_found_within_two_frames_and_no_false_cuts(synth, codec):
    path, cuts, _ = synth[codec]
    rec = probe_videos([new_record("v", uri=str(path))], ProbeConfig(decode_side=256))[0]
    assert rec["status"] == "ok", rec
    parts = split_shots([rec], VideoConfig().shots)[1:]
    found = [p["clip"]["start_frame"] for p in parts if p["clip"]["cut_before"]]
    assert len(found) == len(cuts) - 1  # the pan scene and the moving object make no false cut
    for want, got in zip(cuts[1:], found):
        assert abs(want - got) <= 2, (cuts, found)


@pytest.mark.timeout(60)
def test_static_and_dark_filtered_letterbox_cropped(synth):
    path, _cuts, scenes = synth["h264"]
    out = run_analysis(path)
    by_scene = {}
    for r in out[1:]:
        r.get("clip", {}).get("start_frame")
        by_scene[r["id"]] = r
    clips = [r for r in out if r["id"] != "v"]
    assert len(clips) == len(scenes)
    status = {scenes[i].kind + str(i): (r["status"], r.get("reason")) for i, r in
              enumerate(sorted(clips, key=lambda r: r["id"]))}
    assert status["static3"] == ("filtered", "static")
    assert status["dark4"] == ("filtered", "too_dark")
    assert {status[k][0] for k in ("moving0", "pan1", "moving2", "letterbox5")} == {"ok"}
    dropped = [r for r in clips if r["status"] == "filtered"]
    assert all("motion" in r["scores"] and "brightness" in r["scores"] for r in dropped)
    letter = sorted(clips, key=lambda r: r["id"])[5]
    l, t, r_, b = letter["crop"]["source_box"]
    bar = SIZE[1] // 8
    assert (l, r_) == (0, SIZE[0]) and abs(t - bar) <= 2 and abs(b - (SIZE[1] - bar)) <= 2
    for f in letter["frames"]:
        img = np.asarray(Image.open(io.BytesIO(f["data"])).convert("L"), np.float32)
        assert img[:2].mean() > 30 and img[-2:].mean() > 30  # no black bar left at top or bottom


@pytest.mark.timeout(60)
def test_pillarbox_cropped_in_mp4v(synth):
    path, _cuts, _scenes = synth["mp4v"]
    clips = sorted([r for r in run_analysis(path) if r["id"] != "v"], key=lambda r: r["id"])
    l, t, r_, b = clips[1]["crop"]["source_box"]
    bar = SIZE[0] // 8
    assert abs(l - bar) <= 2 and abs(r_ - (SIZE[0] - bar)) <= 2 and (t, b) == (0, SIZE[1])
    assert not clips[0]["crop"]["cropped"] and not clips[2]["crop"]["cropped"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("codec", ["h264", "mp4v"])
def test_sampled_frames_never_straddle_a_cut_and_match_the_scene(synth, codec):
    path, cuts, scenes = synth[codec]
    cfg = VideoConfig.tiny()
    cfg = replace(cfg, quality=replace(cfg.quality, min_motion=0.0, min_brightness=0.0, min_sharpness=0.0),
                  frames=replace(cfg.frames, phash_distance=0))
    kept = [r for r in run_analysis(path, cfg) if r["status"] == "ok"]
    assert len(kept) == len(scenes)
    truth = [render_scene(s, *SIZE) for s in scenes]
    for r in kept:
        idx = [f["frame"] for f in r["frames"]]
        assert 2 <= len(idx) <= cfg.frames.frames_per_clip and idx == sorted(idx)
        sc = {scene_of(i, cuts) for i in idx}
        assert len(sc) == 1, f"frames {idx} straddle cuts {cuts}"
        k = sc.pop()
        for f in r["frames"]:
            assert f["width"] % 16 == 0 and f["height"] % 16 == 0 and max(f["width"], f["height"]) <= 128
            got = np.asarray(Image.open(io.BytesIO(f["data"])).convert("RGB").resize((32, 18)), np.float32)
            want = np.asarray(Image.fromarray(truth[k][f["frame"] - cuts[k]]).resize((32, 18)), np.float32)
            others = [np.asarray(Image.fromarray(t[0]).resize((32, 18)), np.float32) for j, t in enumerate(truth) if j != k]
            err = np.abs(got - want).mean()
            if scenes[k].kind not in ("letterbox", "pillarbox"):  # cropped frames are a different view
                assert err < 12 and all(err < np.abs(got - o).mean() for o in others)
            assert abs(f["t"] - f["frame"] / 30.0) < 1e-3


@pytest.mark.timeout(60)
def test_near_duplicate_frames_dropped(synth):
    path, _cuts, _scenes = synth["h264"]
    cfg = VideoConfig.tiny()
    cfg = replace(cfg, quality=replace(cfg.quality, min_motion=0.0))
    static = [r for r in run_analysis(path, cfg) if r["id"] != "v"]
    static = sorted(static, key=lambda r: r["id"])[3]
    assert static["status"] == "filtered" and static["reason"] == "near_duplicate_frames"
    assert static["scores"]["distinct"] == 1


def test_long_shots_split_into_clips_no_longer_than_max():
    idx = np.arange(0, 900, 2)
    clips = make_clips(idx, [150], 900, 30.0, replace(VideoConfig().shots, max_clip_s=10.0))
    spans = [(c["shot"], c["start_frame"], c["end_frame"]) for c in clips]
    assert spans[0] == (0, 0, 300) and all(s == 1 for s, _, _ in spans[1:])
    assert all((e - s) / 30.0 <= 10.0 for _, s, e in spans) and spans[-1][2] == 900
    assert clips[1]["cut_before"] and not clips[2]["cut_before"]


@pytest.mark.timeout(30)
def test_probe_time_limit_and_frame_cap(synth):
    path, _, _ = synth["h264"]
    rec = new_record("v", uri=str(path))
    slow = probe_videos([rec], ProbeConfig(time_limit_s=0.0005))[0]
    assert slow["status"] == "failed" and slow["error_kind"] == "timeout"
    capped = probe_videos([rec], ProbeConfig(max_frames=50))[0]
    assert capped["status"] == "filtered" and capped["reason"] == "too_long"
    cut = probe_videos([rec], ProbeConfig(max_frames=50, on_long="truncate", decode_side=64))[0]
    assert cut["status"] == "ok" and cut["video"]["frames_decoded"] == 50 and cut["thumb_idx"].max() < 50


@pytest.mark.timeout(60)
def test_similar_adjacent_shots_merge_only_when_asked(tmp_path):
    """A cut between two shots of the same look (one is the other mirrored) is kept apart unless merging is on."""
    rng = np.random.default_rng(0)
    h, w = SIZE[1], SIZE[0]

    def blocks(c0, c1):
        mask = rng.integers(0, 2, (h // 12, w // 16), dtype=bool).repeat(12, 0).repeat(16, 1)[:, :, None]
        return np.where(mask, np.array(c0, np.uint8), np.array(c1, np.uint8))

    a = blocks((250, 250, 250), (30, 30, 120))
    c = blocks((200, 30, 30), (230, 220, 40))
    frames = np.stack([a] * 40 + [a[:, ::-1]] * 40 + [c] * 40)
    path = write_frames(tmp_path / "alike.mp4", frames, 30.0)
    rec = probe_videos([new_record("v", uri=str(path))], ProbeConfig(decode_side=128))[0]
    assert rec["status"] == "ok", rec
    spans = {}
    for merge in (False, True):
        cfg = replace(VideoConfig().shots, merge_similar=merge)
        parts = split_shots([rec], cfg)[1:]
        spans[merge] = [(p["clip"]["shot"], p["clip"]["start_frame"], p["clip"]["end_frame"]) for p in parts]
        assert [p["clip"]["cut_before"] for p in parts] == [False] + [True] * (len(parts) - 1)
    apart, merged = spans[False], spans[True]
    assert [s for s, _, _ in apart] == [0, 1, 2] and [s for s, _, _ in merged] == [0, 1]
    assert abs(apart[0][2] - 40) <= 2 and abs(apart[1][2] - 80) <= 2 and apart[2][2] == 120
    assert merged[0][1] == 0 and merged[0][2] == apart[1][2] == merged[1][1] and merged[1][2] == 120


class StandIn:
    """A stand-in captioner for the caption stage's own logic (batching, errors, bookkeeping)."""

    backend, model = "standin", "standin-1"

    def __init__(self, fail_on: int | None = None):
        self.fail_on, self.calls = fail_on, []

    def caption(self, requests):
        self.calls.append(len(requests))
        return [CaptionResult("", "error", error="server said no") if i == self.fail_on
                else CaptionResult(f"change {i}", "ok" if i % 2 else "truncated") for i in range(len(requests))]


def _clip(n_frames: int, rid: str) -> dict:
    frames = [{"data": bytes([i]), "width": 16, "height": 16, "frame": i, "t": i / 10, "phash": "0"} for i in range(n_frames)]
    return {"id": rid, "input": "v", "status": "ok", "frames": frames}


def test_caption_stage_batches_pairs_and_fails_clips_with_errors():
    job = CaptionJob()
    cap = StandIn(fail_on=4)
    out = caption_pairs([_clip(4, "a"), _clip(3, "b")], job, cap)
    assert cap.calls == [5]  # one call for all pairs of the batch
    a, b = out
    assert [c["text"] for c in a["changes"]] == ["change 0", "change 1", "change 2"]
    assert [c["status"] for c in a["changes"]] == ["truncated", "ok", "truncated"]
    assert all(c["prompt_id"] == "change_caption@v1" for c in a["changes"])
    assert a["captioner"] == {"backend": "standin", "model": "standin-1"}
    assert b["status"] == "failed" and b["error_kind"] == "caption_error" and "server said no" in b["message"]


def test_subtitles_parse_vtt_and_srt():
    vtt = "WEBVTT\n\n00:00:00.000 --> 00:00:00.999  line:80%\nHildy!\n\n00:01.500 --> 00:02.999\nTell <u>me</u>\n"
    srt = "1\n00:00:01,000 --> 00:00:02,000\nHello\nthere\n\n2\n00:00:03,250 --> 00:00:04,000\nBye\n"
    assert parse_subtitles(vtt) == [(0.0, 0.999, "Hildy!"), (1.5, 2.999, "Tell me")]
    assert parse_subtitles(srt) == [(1.0, 2.0, "Hello there"), (3.25, 4.0, "Bye")]


def test_frame_config_rejects_bad_values():
    with pytest.raises(ValueError):
        FrameConfig(frames_per_clip=1)
    with pytest.raises(ValueError):
        ProbeConfig(decoder="ffmpeg")
