"""Bad input is data: each bad file ends failed or filtered with a clear reason; the good one is written."""

from __future__ import annotations

import http.server
import json
import socket
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipelines.core.executor import run_pipeline
from pipelines.core.inputs import VIDEO_EXTS, list_inputs
from pipelines.core.stage import new_record
from pipelines.net.fetch import FetchConfig
from pipelines.video_interleave.config import VideoConfig
from pipelines.video_interleave.pipeline import NAME, build_stages
from pipelines.video_interleave.probe import probe_videos
from pipelines.video_interleave.synth import Scene, render_scene, write_audio_only, write_frames, write_scenes
from schemas import load_manifest, read_samples, validate


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(404)
        self.end_headers()

    def log_message(self, *a):
        pass


def _zero_frame_video(path):
    """A Matroska file with a video track and no frames (MP4 muxers drop an empty track altogether)."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        c.start_encoding()
    return path


def size_switch_video(path, small=(320, 180), big=(1600, 1600), n_small=30, n_big=2):
    """An MPEG-TS H.264 stream whose header says ``small`` and that switches to ``big`` after ``n_small`` frames.

    Two encoders, one stream: the second encoder's packets carry their own SPS, as a spliced stream does."""
    from fractions import Fraction

    import av

    frames = render_scene(Scene("moving", n_small, 5), *small)
    with av.open(str(path), "w", format="mpegts") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = small[0], small[1], "yuv420p"
        s.options = {"preset": "ultrafast"}
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode())
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height, enc.pix_fmt = big[0], big[1], "yuv420p"
        enc.time_base, enc.framerate, enc.options = Fraction(1, 30), 30, {"preset": "ultrafast"}
        for i in range(n_big):
            yuv = np.full((big[1] * 3 // 2, big[0]), 60 + 40 * i, np.uint8)
            f = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            f.pts, f.time_base = n_small + i, enc.time_base
            for p in [*enc.encode(f), *(enc.encode(None) if i == n_big - 1 else [])]:
                p.stream = s
                c.mux(p)
    return path


@pytest.mark.timeout(120)
def test_bad_inputs_end_with_reasons_and_good_ones_are_written(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    write_scenes(d / "good.mp4", [Scene("moving", 45, 1), Scene("pan", 45, 2)])
    good = (d / "good.mp4").read_bytes()
    (d / "corrupt.mp4").write_bytes(good[:48] + np.random.default_rng(0).integers(0, 256, 20000, np.uint8).tobytes())
    write_scenes(d / "long_source.mkv", [Scene("moving", 90, 3)])
    data = (d / "long_source.mkv").read_bytes()
    (d / "truncated.mkv").write_bytes(data[: len(data) // 2])
    (d / "long_source.mkv").unlink()
    _zero_frame_video(d / "zero.mkv")
    write_audio_only(d / "audio.mp4")
    (d / "text.mp4").write_text("this is not a video, only a text file with a video extension\n" * 20)
    write_frames(d / "huge.mp4", np.zeros((2, 2400, 4800, 3), np.uint8), 30.0)
    long = np.repeat(render_scene(Scene("moving", 50, 4), 64, 48), 20, axis=0)  # 1000 frames; cap is 100
    write_frames(d / "long.mp4", long, 30.0)
    size_switch_video(d / "switch.ts")  # 320x180 in the header, 1600x1600 from frame 30 on

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed = s.getsockname()[1]
    s.close()
    specs = [str(d), str(tmp_path / "missing.mp4"), f"http://127.0.0.1:{srv.server_address[1]}/gone.mp4",
             f"http://127.0.0.1:{closed}/v.mp4"]
    cfg = VideoConfig.tiny()
    cfg = replace(cfg, run=replace(cfg.run, out_dir=str(tmp_path / "out")),
                  probe=replace(cfg.probe, max_frames=100, fetch_timeout_s=10, max_side=1280),
                  fetch=replace(cfg.fetch, allow_private_net=True, retries=0))
    try:
        summary = run_pipeline(build_stages(cfg), list_inputs(specs, VIDEO_EXTS), cfg.run, NAME, cfg)
    finally:
        srv.shutdown()
    recs = load_manifest(tmp_path / "out")
    by_name = {}
    for r in recs.values():
        if r["id"] == r["input"]:
            by_name[r["id"].rsplit("-", 1)[0]] = r
    expect = {
        "corrupt_mp4": ("failed", {"unreadable", "decode_error", "no_frames"}),
        "truncated_mkv": ("failed", {"truncated"}),
        "zero_mkv": ("failed", {"no_frames"}),
        "audio_mp4": ("failed", {"no_video_stream"}),
        "text_mp4": ("failed", {"unreadable"}),
        "huge_mp4": ("filtered", {"resolution_too_large"}),
        "long_mp4": ("filtered", {"too_long"}),
        "switch_ts": ("filtered", {"resolution_too_large"}),
        "missing_mp4": ("failed", {"not_found"}),
        "gone_mp4": ("failed", {"http_404"}),
        "v_mp4": ("failed", {"connection_error"}),
    }
    for name, (status, kinds) in expect.items():
        r = by_name[name]
        assert r["status"] == status, (name, r)
        assert (r.get("error_kind") or r.get("reason")) in kinds, (name, r)
        assert r.get("message") or r.get("detail"), (name, r)
    assert by_name["good_mp4"]["status"] == "split"
    assert "frame 30 is 1600x1600" in by_name["switch_ts"]["detail"]  # stopped at the first large frame
    assert summary["inputs"] == 12 and summary["written"] == 1 and summary["failed"] == 8 and summary["filtered"] == 3
    samples = list(read_samples(sorted((tmp_path / "out").glob("*.tar"))))
    assert len(samples) == 2
    for smp in samples:
        validate(smp)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["written"] == 1


class _Videos(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    good = b""

    def do_GET(self):
        if self.path.startswith("/good.mp4"):
            body = _Videos.good
        elif self.path == "/to-meta.mp4":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        elif self.path == "/trickle.mp4":  # the good video's bytes, one a second
            body = None
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(_Videos.good)))
        self.end_headers()
        try:
            if body is not None:
                self.wfile.write(body)
                return
            for b in _Videos.good:
                self.wfile.write(bytes([b]))
                self.wfile.flush()
                time.sleep(1.0)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *a):
        pass


@pytest.mark.timeout(120)
def test_remote_videos_go_through_the_guarded_download(tmp_path):
    write_scenes(tmp_path / "good.mp4", [Scene("moving", 45, 1)])
    _Videos.good = (tmp_path / "good.mp4").read_bytes()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Videos)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    temps = set(Path(tempfile.gettempdir()).glob("braid-fetch-*"))
    cfg = replace(VideoConfig.tiny().probe, time_limit_s=3.0)
    lan = FetchConfig(allow_private_net=True, retries=0, svg="reject")
    try:
        ok, trickle, meta = probe_videos([new_record(n, uri=f"{base}/{n}") for n in (
            "good.mp4?sig=a%2Fb", "trickle.mp4", "to-meta.mp4")], cfg, lan)
        t0 = time.monotonic()
        refused = probe_videos([new_record("x", uri=f"{base}/good.mp4")], cfg,
                               FetchConfig(retries=0, svg="reject"))[0]
        took = time.monotonic() - t0
    finally:
        srv.shutdown()
        srv.server_close()
    assert ok["status"] == "ok" and ok["video"]["frames"] == 45
    assert trickle["status"] == "failed" and trickle["error_kind"] == "timeout", trickle
    assert meta["status"] == "failed" and meta["error_kind"] == "refused_address" and "metadata" in meta["message"]
    assert refused["error_kind"] == "refused_address" and "--allow-private-net" in refused["message"], refused
    assert took < 3.0  # refused before any byte is read
    assert set(Path(tempfile.gettempdir()).glob("braid-fetch-*")) == temps  # no temp file left on any path
