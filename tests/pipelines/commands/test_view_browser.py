"""``braid view`` on a run of 5,000 samples, used in a real headless Chromium over the DevTools protocol: it opens
in under 2 s, pages, filters by kind, shard, caption status, score range and source, searches text, links each
sample to its shard and key, folds ``<think>``, and shows dropped data with the scores that dropped it. Pages are
checked by content: DOM text read back and the colours of known thumbnails in screenshots."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser import CHROMIUM, Browser, pixels_near

from pipelines.commands.cli import main

N = 5000
RED, GREEN, BLUE, MAGENTA = (230, 20, 20), (20, 200, 40), (30, 50, 230), (220, 0, 220)
KINDS = ("video", "web", "reasoning_edit")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium is not installed")


def _jpeg(color, size=(96, 72)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _sample(i: int, imgs: dict, small_png: Path):
    from schemas import CaptionerInfo, ImageSegment, Sample, Source, TextSegment

    kind = KINDS[i % 3]
    if kind == "video":  # red frame, change caption, green frame; every 7th caption truncated
        segs = (ImageSegment(imgs["red"], "jpg", 96, 72, role="frame", provenance={"t": 0.25}),
                TextSegment(f"clip {i}: the cup slides left", role="change", status="truncated" if i % 7 == 0 else "ok"),
                ImageSegment(imgs["green"], "jpg", 96, 72, generation=True, role="frame", provenance={"t": 1.75}))
        meta = {"quality": {"motion": round(i / N, 4), "brightness": 90.0}}
        src = Source(f"file:///videos/v{i % 40:02d}.mp4", span=(1.0, 3.0))
    elif kind == "web":  # text, caption, blue image; one too-small image dropped from the page (a local file)
        segs = (TextSegment(f"Step {i}. Loosen the four bolts of the wheel.", role="body"),
                TextSegment(f"a wheel with bolts {i}", role="caption", status="ok"),
                ImageSegment(imgs["blue"], "jpg", 96, 72, role="image", provenance={"scores": {"clarity": i % 100}}))
        meta = {"image_log": [{"src": small_png.as_uri(), "pos": 1, "stage": "fetch", "reason": "too_small",
                               "scores": {"width": 12, "height": 12, "min_side": 64}}]}
        src = Source(f"https://pages.example/doc{i}.html")
    else:
        segs = (TextSegment("You are a careful visual reasoner.", role="system", loss=False),
                ImageSegment(imgs["red"], "jpg", 96, 72, role="source"),
                TextSegment(f"<think> the edit {i} turns the mug upside down </think>", role="think", status="ok"),
                ImageSegment(imgs["green"], "jpg", 96, 72, understanding=False, generation=True, role="target"))
        meta = {}
        src = Source(f"file:///tables/edits.jsonl#{i}")
    return Sample(f"k-{i:05d}", kind, segs, src, CaptionerInfo("stub", "stub"), meta)


@pytest.fixture(scope="module")
def view(tmp_path_factory):
    from PIL import Image

    from schemas import ShardWriter

    run = tmp_path_factory.mktemp("run")
    small_png = run / "small.png"
    Image.new("RGB", (12, 12), MAGENTA).save(small_png)
    imgs = {"red": _jpeg(RED), "green": _jpeg(GREEN), "blue": _jpeg(BLUE)}
    with ShardWriter(run, "shard-r00", max_count=500) as w:
        for i in range(N):
            w.write(_sample(i, imgs, small_png))
    recs = [{"id": f"clip-{j}", "input": f"vid-{j}", "uri": f"/videos/dropped{j}.mp4", "status": "filtered",
             "stage": "quality", "reason": "static", "scores": {"motion": 0.001 * j, "min_motion": 0.02}}
            for j in range(30)]
    blurry = {"src": small_png.as_uri(), "pos": 2, "stage": "images", "reason": "blurry",
              "scores": {"clarity": 3.0, "min_clarity": 50.0}}
    recs += [{"id": "doc-9", "input": "doc-9", "uri": "https://pages.example/nine.html", "status": "filtered",
              "stage": "images", "reason": "too_few_images", "scores": {"images": 0, "dropped": {"blurry": 1}},
              "detail": f"{small_png.as_uri()[:60]}: blurry", "images": [blurry]},
             {"id": "page-1", "input": "page-1", "uri": "https://down.example/", "status": "failed", "stage": "read",
              "error_kind": "timeout", "message": "no answer in 30 s", "retryable": True}]
    for i in (1, 4):  # the manifest lists a written document's dropped images too: each counts once
        recs.append({"id": f"w{i}", "input": f"w{i}", "status": "written", "shard": "shard-r00-000000.tar",
                     "key": f"k-{i:05d}", "images": [{"src": small_png.as_uri(), "pos": 1, "stage": "fetch",
                                                      "reason": "too_small", "scores": {"width": 12}}]})
    (run / "manifest").mkdir()
    (run / "manifest" / "shard-r00.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = tmp_path_factory.mktemp("view") / "v"
    assert main(["view", str(run), "--out", str(out), "--workers", "2", "--drops", "8"]) == 0
    return run, out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser(tmp_path_factory.mktemp("chromium"))
    yield b
    b.close()


def _cards(b) -> list[dict]:
    return b.eval("[...document.querySelectorAll('section.card')].map(c => ({key: c.dataset.key, kind: "
                  "c.dataset.kind, shard: c.querySelector('a.shard').textContent}))")


def _status(b) -> str:
    return b.eval("document.getElementById('status').textContent")


def _filter(b, **values) -> None:
    sets = "".join(f"f.{k}.value = {json.dumps(v)};" for k, v in values.items())
    b.act(f"(() => {{ const f = document.forms.filters; {sets} f.requestSubmit(); }})()")


@pytest.mark.timeout(600)
def test_a_run_of_5000_samples_opens_fast_and_pages(view, browser, capsys):
    run, out = view
    opens = []
    for k in range(3):  # three fresh loads (the query string defeats no cache: every file is read again)
        seconds = browser.goto(out.joinpath("index.html").as_uri() + f"?open={k}")
        opens.append((int(browser.eval("document.body.dataset.readyMs")), round(seconds, 2)))
    print(f"braid view, {N} samples: first page rendered after (ms after navigation, s wall) {opens}", file=sys.stderr)
    assert min(ms for ms, _ in opens) < 2000  # the best of three: a shared CI machine stalls now and then
    assert _status(browser) == "5,000 of 5,000 samples"
    cards = _cards(browser)
    assert [c["key"] for c in cards] == [f"k-{i:05d}" for i in range(50)]
    # a video clip: one filmstrip row, frame / change caption / frame, with timestamps
    strip = browser.eval("[...document.querySelector('#s0 .strip').children].map(e => e.tagName + ':' + "
                         "e.textContent.trim())")
    assert strip == ["FIGURE:t = 0.25 s", "DIV:clip 0: the cup slides left truncated", "FIGURE:t = 1.75 s"]
    # a reasoning sample: the think block and the system prompt are folded
    think = browser.eval("(() => { const d = document.querySelector('#s2 details.think'); return [d.open, "
                         "d.querySelector('summary').textContent]; })()")
    assert think == [False, "think · 8 words"]
    assert browser.eval("document.querySelector('#s2 details.sys').open") is False
    # each sample links to its shard file and names its key
    href, key = browser.eval("[document.querySelector('#s0 a.shard').getAttribute('href'), "
                             "document.querySelector('#s0 a.key').textContent]")
    assert (out / href).resolve() == (run / "shard-r00-000000.tar").resolve() and key == "k-00000"
    # paging: next, then straight to the last page
    browser.goto(out.joinpath("index.html").as_uri())
    browser.act("document.getElementById('next').click()")
    assert browser.eval("location.hash") == "#page=2" and _cards(browser)[0]["key"] == "k-00050"
    browser.act("(() => { const p = document.getElementById('pageno'); p.value = 100; "
                "p.dispatchEvent(new Event('change')); })()")
    assert [c["key"] for c in _cards(browser)][-1] == "k-04999"
    # the screenshot shows the known thumbnails: red and green frames, blue web images
    browser.act("location.hash = ''")
    shot = browser.screenshot()
    assert pixels_near(shot, RED) > 96 * 72 and pixels_near(shot, GREEN) > 96 * 72 and pixels_near(shot, BLUE) > 96 * 72


@pytest.mark.timeout(600)
def test_filters_and_search(view, browser):
    _, out = view
    browser.goto(out.joinpath("index.html").as_uri())
    _filter(browser, kind="video")
    cards = _cards(browser)
    assert _status(browser) == f"{len(range(0, N, 3)):,} of 5,000 samples" and {c["kind"] for c in cards} == {"video"}
    shot = browser.screenshot()  # frames only: red and green, no blue web image
    assert pixels_near(shot, RED) > 96 * 72 and pixels_near(shot, BLUE) < 96 * 72 / 8
    _filter(browser, kind="web")
    shot = browser.screenshot()
    assert pixels_near(shot, BLUE) > 96 * 72 and pixels_near(shot, RED) < 96 * 72 / 8
    _filter(browser, kind="", shard="3")
    assert _status(browser) == "500 of 5,000 samples"
    assert {c["shard"] for c in _cards(browser)} == {"shard-r00-000003.tar"}
    _filter(browser, shard="", cap="truncated")
    assert _status(browser) == f"{len(range(0, N, 21)):,} of 5,000 samples"  # video (i % 3 == 0) and i % 7 == 0
    _filter(browser, cap="", score="quality.motion", min="0.5", max="0.6")
    expect = [i for i in range(0, N, 3) if 0.5 <= round(i / N, 4) <= 0.6]
    assert _status(browser) == f"{len(expect):,} of 5,000 samples" and _cards(browser)[0]["key"] == f"k-{expect[0]:05d}"
    _filter(browser, score="", min="", max="", src="v07.mp4")
    assert _status(browser) == f"{len([i for i in range(0, N, 3) if i % 40 == 7]):,} of 5,000 samples"
    _filter(browser, src="", q="The Edit 4244 turns")
    assert _status(browser) == "1 of 5,000 samples" and _cards(browser)[0]["key"] == "k-04244"
    assert "q=The+Edit+4244+turns" in browser.eval("location.hash")  # the state is in the address
    browser.goto(out.joinpath("index.html").as_uri() + "#kind=web&page=3")
    assert _cards(browser)[0]["key"] == f"k-{list(range(1, N, 3))[100]:05d}"


@pytest.mark.timeout(600)
def test_dropped_data_with_scores_and_thumbnails(view, browser):
    _, out = view
    browser.goto(out.joinpath("index.html").as_uri() + "#tab=drops")
    groups = browser.eval("[...document.querySelectorAll('.drop-group')].map(g => [g.dataset.level, g.dataset.reason, "
                          "g.querySelectorAll('.ex').length, g.querySelector('h3').textContent.replace(/\\s+/g, ' ')])")
    by = {(lvl, r): (n, head) for lvl, r, n, head in groups}
    assert by[("image", "too_small")][0] == 8 and "1,667 in all" in by[("image", "too_small")][1]
    assert by[("image", "blurry")][0] == 1  # from the filtered document's record (its whole list of images)
    assert "clarity=3 · min_clarity=50" in browser.eval(
        "document.querySelector('.drop-group[data-reason=blurry]').innerText")
    assert by[("unit", "static")][0] == 8 and "30 in all" in by[("unit", "static")][1]
    assert by[("failed", "timeout")][0] == 1
    text = browser.eval("document.querySelector('.drop-group[data-reason=static]').innerText")
    assert "min_motion=0.02" in text and "/videos/dropped" in text and "no thumbnail" in text
    shot = browser.screenshot()  # the dropped 12x12 image, thumbnailed from its local file, in its own colour
    assert pixels_near(shot, MAGENTA) >= 8 * 12 * 12
    assert len(os.listdir(out / "thumbs" / "drops")) == 9  # 8 too_small examples and the blurry one


def test_bad_arguments(tmp_path, capsys):
    assert main(["view", str(tmp_path / "missing.tar"), "--out", str(tmp_path / "v")]) == 2
    assert "no such shard" in capsys.readouterr().err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("x")
    (tmp_path / "x.tar").write_bytes(b"")
    assert main(["view", str(tmp_path / "x.tar"), "--out", str(tmp_path / "notes")]) == 2
    assert "is not an earlier braid view" in capsys.readouterr().err
