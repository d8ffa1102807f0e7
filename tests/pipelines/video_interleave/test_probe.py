"""Stage 1's decoders: the PyAV analysis pass is frame-exact on B-frame video; decord and OpenCV agree with it."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from video_scenes import FPS, MAIN_SCENES, SIZE

from pipelines.core.stage import new_record
from pipelines.video_interleave.config import ProbeConfig, VideoConfig
from pipelines.video_interleave.decode import decode_decord
from pipelines.video_interleave.probe import probe_videos
from pipelines.video_interleave.shots import split_shots
from pipelines.video_interleave.synth import render_scene


def _err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def _thumbs_of(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


@pytest.mark.timeout(60)
def test_decoders_give_the_same_frames(synth):
    path, _, _ = synth["h264"]
    cfg = ProbeConfig(decode_side=128)
    rec = new_record("v", uri=str(path))
    a = probe_videos([rec], cfg)[0]
    b = probe_videos([rec], ProbeConfig(decoder="opencv", decode_side=128))[0]
    c = decode_decord(str(path), cfg, None, threading.Event())
    assert a["video"]["decoder"] == "pyav" and b["video"]["decoder"] == "opencv" and c.decoder == "decord"
    assert a["video"]["frames"] == b["video"]["frames"] == c.frames
    for idx, thumbs, cidx, cands in ((b["thumb_idx"], b["thumbs"], b["cand_idx"], b["cands"]),
                                     (c.thumb_idx, c.thumbs, c.cand_idx, c.cands)):
        assert np.array_equal(a["thumb_idx"], idx) and np.array_equal(a["cand_idx"], cidx)
        assert a["thumbs"].shape == thumbs.shape and a["cands"].shape == cands.shape
        assert _err(a["thumbs"], thumbs) < 6 and _err(a["cands"], cands) < 6


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["pyramid", "flat"])
def test_analysis_pass_on_b_frames_is_frame_exact(synth_bframes, kind):
    path, cuts, truth = synth_bframes[kind]
    rec = probe_videos([new_record("v", uri=str(path))], ProbeConfig(decode_side=256))[0]
    assert rec["status"] == "ok" and rec["video"]["decoder"] == "pyav", rec
    assert rec["video"]["frames"] == len(truth)
    idx, thumbs = rec["thumb_idx"], rec["thumbs"]
    gaps = np.diff(idx)
    # about every 2nd frame; flat B-runs of three make the pass decode every frame once it sees one
    assert gaps.min() >= 2 and gaps.max() <= (3 if kind == "pyramid" else 4) and len(idx) >= len(truth) // 3
    # each thumbnail and candidate is its own frame, not a neighbour: frame numbers are exact despite skipped frames
    for arr, at in ((thumbs, idx), (rec["cands"], rec["cand_idx"])):
        want = _thumbs_of(truth, arr.shape[2:0:-1])
        for k, i in enumerate(at):
            others = [_err(arr[k], want[j]) for j in (i - 1, i + 1) if 0 <= j < len(want)]
            assert _err(arr[k], want[i]) <= min(others) + 0.5, (kind, int(i))
            assert _err(arr[k], want[i]) < 8
    parts = split_shots([rec], VideoConfig().shots)[1:]
    found = [p["clip"]["start_frame"] for p in parts if p["clip"]["cut_before"]]
    assert len(found) == len(cuts) - 1 and all(abs(w - g) <= 2 for w, g in zip(cuts[1:], found)), (cuts, found)


@pytest.mark.timeout(60)
def test_stream_without_timestamps_goes_to_the_next_decoder(synth_bframes):
    path, cuts, truth = synth_bframes["raw"]
    rec = probe_videos([new_record("v", uri=str(path))], ProbeConfig(decode_side=128))[0]
    assert rec["status"] == "ok" and rec["video"]["decoder"] in ("decord", "opencv"), rec
    assert np.array_equal(rec["thumb_idx"], np.arange(0, len(truth), 2))
    parts = split_shots([rec], VideoConfig().shots)[1:]
    found = [p["clip"]["start_frame"] for p in parts if p["clip"]["cut_before"]]
    assert len(found) == len(cuts) - 1 and all(abs(w - g) <= 2 for w, g in zip(cuts[1:], found)), (cuts, found)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuvj420p", "yuv444p", "yuv420p10le"])
def test_thumbnail_and_candidate_colours_are_true_in_every_pixel_format(tmp_path, write_x264, pix_fmt):
    """Limited and full range 4:2:0 go the plane path; other layouts and depths go through swscale."""
    truth = np.concatenate([render_scene(s, *SIZE) for s in MAIN_SCENES[:3]])
    path = write_x264(tmp_path / f"{pix_fmt}.mp4", truth, FPS, {"preset": "veryfast"}, pix_fmt=pix_fmt)
    rec = probe_videos([new_record("v", uri=str(path))], ProbeConfig(decode_side=128))[0]
    assert rec["status"] == "ok" and rec["video"]["decoder"] == "pyav", rec
    for arr, at, tol in ((rec["thumbs"], rec["thumb_idx"], 3.0), (rec["cands"], rec["cand_idx"], 7.0)):
        want = _thumbs_of(truth[at], arr.shape[2:0:-1])
        assert _err(arr, want) < tol, pix_fmt
        assert np.abs(arr.reshape(-1, 3).mean(0) - want.reshape(-1, 3).mean(0)).max() < 2.0, pix_fmt
