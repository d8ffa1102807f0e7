"""What a filter threw away can be seen: dropped clips keep a few frames and their time span, dropped web
images a thumbnail, under OUT/dropped/, named by the manifest (what ``braid view``'s Dropped tab shows)."""

from __future__ import annotations

import json
from pathlib import Path

from braid_cli import braid
from PIL import Image


def _records(out: Path) -> list[dict]:
    return [json.loads(x) for p in sorted((out / "manifest").glob("*.jsonl")) for x in p.read_text().splitlines()]


def _is_jpeg(path: Path) -> bool:
    with Image.open(path) as im:
        return im.format == "JPEG" and max(im.size) <= 192


def test_a_dropped_clip_keeps_frames_and_its_span(tmp_path):
    from pipelines.video_interleave.synth import Scene, write_scenes

    vids = tmp_path / "v"
    write_scenes(vids / "still.mp4", [Scene("static", 48, 5)], 24.0, (256, 144))
    out = tmp_path / "out"
    code, _, err = braid("video", str(vids), "--out", str(out), "--preset", "tiny")
    assert code == 0, err
    static = [r for r in _records(out) if r.get("reason") == "static"]
    assert static, _records(out)
    rec = static[0]
    assert rec["span"][0] == 0.0 and rec["span"][1] > 1.5
    assert 1 <= len(rec["thumbs"]) <= 3 and all(_is_jpeg(out / t) for t in rec["thumbs"])


def test_dropped_web_images_keep_a_thumbnail(tmp_path):
    from pipelines.web_interleave.synth import make_example_pages

    pages = make_example_pages(tmp_path / "pages", n_pages=1)
    out = tmp_path / "out"
    code, _, err = braid("web", *map(str, pages), "--out", str(out), "--preset", "tiny", "--set", "filters.min_side=2000",
                         "--set", "filters.max_ocr_tokens=null", "--set", "filters.min_relevance=null")
    assert code == 0, err
    doc = next(r for r in _records(out) if r.get("reason") == "too_few_images")
    sized = [e for e in doc["images"] if e["reason"] == "image_size"]
    assert sized and all(_is_jpeg(out / e["thumb"]) for e in sized)
    assert all(e["src"].endswith(".jpg") for e in sized)  # whole sources, not cut
