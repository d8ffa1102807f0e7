"""Synthetic videos with known content, written once per session, and the tiny captioner model."""

from __future__ import annotations

import numpy as np
import pytest
from video_scenes import FPS, MAIN_SCENES, MP4V_SCENES, SIZE

from pipelines.video_interleave.synth import render_scene, write_scenes


def _write_x264(path, frames, fps: float, options: dict, fmt: str | None = None, pix_fmt: str = "yuv420p"):
    """H.264 with B-frames (the synth helper writes none), as most real videos are."""
    import av

    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream("libx264", rate=round(fps))
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        s.options = {"crf": "20", **options}
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    main = d / "scenes.mp4"
    cuts = write_scenes(main, MAIN_SCENES, FPS, SIZE, "h264")
    alt = d / "scenes_mp4v.mp4"
    cuts_alt = write_scenes(alt, MP4V_SCENES, FPS, SIZE, "mp4v")
    return {"h264": (main, cuts, MAIN_SCENES), "mp4v": (alt, cuts_alt, MP4V_SCENES), "dir": d}


@pytest.fixture(scope="session")
def synth_bframes(tmp_path_factory):
    """MAIN_SCENES as H.264 with B-frames: pyramid (x264's default), flat runs of three, and a raw stream."""
    d = tmp_path_factory.mktemp("synth_b")
    frames = np.concatenate([render_scene(s, *SIZE) for s in MAIN_SCENES])
    cuts = np.cumsum([0] + [s.frames for s in MAIN_SCENES[:-1]]).tolist()
    fast = {"preset": "veryfast", "bf": "3"}
    return {
        "pyramid": (_write_x264(d / "pyramid.mp4", frames, FPS, fast), cuts, frames),
        "flat": (_write_x264(d / "flat.mp4", frames, FPS, {**fast, "x264-params": "b-pyramid=none"}), cuts, frames),
        "raw": (_write_x264(d / "raw.h264", frames, FPS, fast, fmt="h264"), cuts, frames),
    }


@pytest.fixture(scope="session")
def write_x264():
    return _write_x264
