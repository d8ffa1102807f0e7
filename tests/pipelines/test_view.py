"""braid view on a few shards: a seeded random subset, a re-run over an earlier view, escaped text in a real
headless Chromium, and the reservoir draw. (The 5,000-sample run: tests/pipelines/commands/test_view_browser.py.)"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "commands"))
from browser import CHROMIUM, Browser

from pipelines.commands.cli import main
from pipelines.commands.view import reservoir
from schemas import ImageSegment, Sample, ShardWriter, Source, TextSegment

COLORS = {"red": (230, 20, 20), "green": (20, 200, 40), "blue": (30, 50, 230)}


def _png(color, size=(120, 90)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def _sample(i: int) -> Sample:
    name = list(COLORS)[i % 3]
    return Sample(
        key=f"s-{i:03d}", kind="video", source=Source(f"file:///v{i}.mp4"),
        segments=(
            ImageSegment(_png(COLORS[name]), "png", 120, 90, understanding=True, generation=False, role="frame"),
            TextSegment(f"caption <b>{i}</b> {name}", role="change", loss=i % 2 == 0),
            ImageSegment(_png(COLORS[name]), "png", 120, 90, understanding=False, generation=True, role="frame"),
        ),
        meta={"score": i / 10},
    )


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("view")
    with ShardWriter(d, "shard", max_count=4) as w:
        for i in range(9):
            w.write(_sample(i))
    return d


def _index(view: Path) -> dict:
    text = (view / "data" / "index.js").read_text()
    assert text.startswith("braidIndex(") and text.endswith(");\n")
    return json.loads(text[len("braidIndex("): -3])


def test_a_seeded_random_subset_in_shard_order(shards, tmp_path):
    out = tmp_path / "v"
    assert main(["view", str(shards), "--out", str(out), "--n", "4", "--seed", "3", "--workers", "1"]) == 0
    keys = _index(out)["cols"]["key"]
    assert len(keys) == 4 and keys == sorted(keys)
    assert main(["view", str(shards), "--out", str(out), "--n", "4", "--seed", "3"]) == 0  # over an earlier view
    assert _index(out)["cols"]["key"] == keys
    assert main(["view", str(shards), "--out", str(tmp_path / "w"), "--n", "4", "--seed", "4"]) == 0
    assert _index(tmp_path / "w")["cols"]["key"] != keys
    assert _index(out)["scores"]["score"] == [int(k[2:]) / 10 for k in keys]
    thumbs = sorted(p.name for p in (out / "thumbs").rglob("*.png"))
    assert thumbs == sorted(f"{k}.{j:03d}.png" for k in keys for j in range(2))  # small images kept as they are


def test_reservoir_is_uniform_enough_and_keeps_order():
    import random

    hits = [0] * 10
    for seed in range(2000):
        for x in reservoir(range(10), 3, random.Random(seed)):
            hits[x] += 1
    assert all(500 < h < 700 for h in hits)  # expected 600 each
    assert reservoir(range(10), 3, random.Random(1)) == sorted(reservoir(range(10), 3, random.Random(1)))
    assert reservoir(range(2), 5, random.Random(0)) == [0, 1]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium is not installed")
@pytest.mark.timeout(180)
def test_text_is_escaped_and_segments_keep_their_order(shards, tmp_path):
    out = tmp_path / "v"
    assert main(["view", str(shards), "--out", str(out)]) == 0
    b = Browser(tmp_path / "chromium")
    try:
        b.goto(out.joinpath("index.html").as_uri())
        got = b.eval("(() => { const c = document.querySelector('section.card[data-key=\"s-001\"]'); return ["
                     "c.querySelectorAll('b').length, c.querySelector('.chg').textContent, "
                     "[...c.querySelector('.strip').children].map(e => e.tagName)]; })()")
    finally:
        b.close()
    assert got == [0, "caption <b>1</b> green", ["FIGURE", "DIV", "FIGURE"]]


def test_a_run_folder_leaves_out_unfinished_shards(shards, tmp_path):
    import shutil

    from pipelines.commands.view import shard_paths

    run = tmp_path / "run"
    shutil.copytree(shards, run)
    (run / "manifest").mkdir()
    unfinished = run / "shard-000099.tar"
    shutil.copy(run / "shard-000000.tar", unfinished)  # a tar without its stats file: the writer was killed
    assert unfinished not in shard_paths([str(run)])
    assert shard_paths([str(run)]) == sorted(run.glob("shard-00000[0-2].tar"))
    assert unfinished in shard_paths([str(unfinished)])  # named on purpose: read as it is
