"""Bad input is data: each bad file ends failed or filtered with a clear reason; the good one is written."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from dataclasses import replace

import numpy as np
import pytest

from pipelines.core.inputs import VIDEO_EXTS, list_inputs
from pipelines.video_interleave.config import VideoConfig
from pipelines.core.executor import run_pipeline
from pipelines.video_interleave.pipeline import NAME, build_stages
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
                  probe=replace(cfg.probe, max_frames=100, fetch_timeout_s=10))
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
    assert summary["inputs"] == 11 and summary["written"] == 1 and summary["failed"] == 8 and summary["filtered"] == 2
    samples = list(read_samples(sorted((tmp_path / "out").glob("*.tar"))))
    assert len(samples) == 2
    for smp in samples:
        validate(smp)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["written"] == 1
