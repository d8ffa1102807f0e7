"""braid view: a self-contained page of random samples, checked in a real headless Chromium."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pipelines.commands.cli import main
from pipelines.commands.view import reservoir
from schemas import ImageSegment, Sample, ShardWriter, Source, TextSegment

CHROMIUM = "/usr/bin/chromium"
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


def test_page_is_self_contained_and_shows_segments_in_order(shards, tmp_path):
    out = tmp_path / "page.html"
    assert main(["view", str(shards), "--out", str(out), "--n", "4", "--seed", "3"]) == 0
    page = out.read_text()
    keys = re.findall(r'<section class="sample" id="(s-\d+)"', page)
    assert len(keys) == 4 and keys == sorted(keys)  # shown in shard order
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing fetched from anywhere
    assert page.count('<img src="data:image/jpeg;base64,') == 8
    assert "caption &lt;b&gt;" in page and "<b>" not in page  # text is escaped
    first = page.index(f'id="{keys[0]}"')
    section = page[first: page.index("</section>", first)]
    assert section.index("image 0") < section.index('data-role="change"') < section.index("image 1")
    assert "understanding" in section and "generation" in section and "<details>" in section
    assert ("badge loss" in section) != ("no loss" in section)
    # same seed, same page; another seed, another draw
    again = tmp_path / "again.html"
    main(["view", str(shards), "--out", str(again), "--n", "4", "--seed", "3"])
    assert again.read_text() == page
    other = tmp_path / "other.html"
    main(["view", str(shards), "--out", str(other), "--n", "4", "--seed", "4"])
    assert re.findall(r'id="(s-\d+)"', other.read_text()) != keys


def test_reservoir_is_uniform_enough_and_keeps_order():
    import random

    hits = [0] * 10
    for seed in range(2000):
        for x in reservoir(range(10), 3, random.Random(seed)):
            hits[x] += 1
    assert all(500 < h < 700 for h in hits)  # expected 600 each
    assert reservoir(range(10), 3, random.Random(1)) == sorted(reservoir(range(10), 3, random.Random(1)))
    assert reservoir(range(2), 5, random.Random(0)) == [0, 1]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="headless Chromium is not installed")
@pytest.mark.timeout(120)
def test_images_render_in_headless_chromium(shards, tmp_path):
    from PIL import Image

    page = tmp_path / "page.html"
    assert main(["view", str(shards), "--out", str(page), "--n", "9", "--thumb", "160"]) == 0
    shot = tmp_path / "shot.png"
    profile = tmp_path / "profile"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=900,4000",
           "--hide-scrollbars", page.as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=90, check=False)
    assert shot.exists(), "chromium wrote no screenshot"
    pixels = Image.open(shot).convert("RGB")
    counts = dict.fromkeys(COLORS, 0)
    for (r, g, b) in pixels.getdata():
        for name, (cr, cg, cb) in COLORS.items():
            if abs(r - cr) < 30 and abs(g - cg) < 30 and abs(b - cb) < 30:
                counts[name] += 1
    # each colour fills at least two thumbnails of 160x120 on the page; a broken image would show none
    assert all(c > 2 * 120 * 90 for c in counts.values()), counts
    shutil.rmtree(profile, ignore_errors=True)
