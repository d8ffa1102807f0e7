"""Synthetic videos with known content, written once per session, and the tiny captioner model."""

from __future__ import annotations

import pytest
from video_scenes import FPS, MAIN_SCENES, MP4V_SCENES, SIZE

from pipelines.video_interleave.synth import write_scenes


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    main = d / "scenes.mp4"
    cuts = write_scenes(main, MAIN_SCENES, FPS, SIZE, "h264")
    alt = d / "scenes_mp4v.mp4"
    cuts_alt = write_scenes(alt, MP4V_SCENES, FPS, SIZE, "mp4v")
    return {"h264": (main, cuts, MAIN_SCENES), "mp4v": (alt, cuts_alt, MP4V_SCENES), "dir": d}


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory):
    tiny = pytest.importorskip("captioners.tiny")
    return tiny.make_tiny_vlm(tmp_path_factory.mktemp("tiny_vlm"))
