"""``braid spotcheck``: the structural report straight after a pipeline run, the scored report with a trained
tiny checkpoint, both rendered in headless Chromium, and bad inputs."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))  # the model tests' shared tiny run
from spot_run import trained_run

from pipelines.commands.cli import main

CHROMIUM = Path("/usr/bin/chromium")
GREEN = (20, 220, 40)  # the test images' colour, easy to find in a screenshot
HIST_BLUE = (121, 173, 210)  # matplotlib's first colour at alpha 0.6 on white: the structure histograms
SCORE_RED = (214, 39, 40)  # the score histograms


def _jpeg(color, size=(64, 48)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _shards(out: Path) -> list[Path]:
    """Two shards of video samples with green frames; one duplicate image, one over-long change caption."""
    from schemas import CaptionerInfo, ImageSegment, Sample, ShardWriter, Source, TextSegment

    samples = []
    for i in range(6):
        segs = [ImageSegment(_jpeg((GREEN[0] + i, GREEN[1], GREEN[2])), "jpg", 64, 48, role="frame"),
                TextSegment(f"the green block {i} slides right", role="change"),
                ImageSegment(_jpeg((GREEN[0] + 10 + i, GREEN[1], GREEN[2])), "jpg", 64, 48, generation=True,
                             role="frame")]
        if i == 4:
            segs[1] = TextSegment(" ".join(["word"] * 40), role="change")
        if i == 5:
            segs[2] = samples[0].segments[2]
        samples.append(Sample(f"g-{i:03d}", "video", tuple(segs), Source("file:///g.mp4", span=(i, i + 1.0)),
                              CaptionerInfo("stub", "stub", ("change_caption@v1",))))
    with ShardWriter(out, max_count=3) as w:
        for s in samples:
            w.write(s)
    return sorted(out.glob("*.tar"))


def _screenshot(html: Path, tmp: Path, height: int = 1600):
    """The page rendered by headless Chromium, as an RGB numpy array."""
    import numpy as np
    from PIL import Image

    if not CHROMIUM.exists():
        pytest.skip("headless Chromium is not installed at /usr/bin/chromium")
    png = tmp / (html.stem + ".png")
    subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp / 'chromium-profile'}", f"--screenshot={png}",
                    f"--window-size=1300,{height}", html.as_uri()], check=True, capture_output=True, timeout=90)
    with Image.open(png) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int32)


def _pixels_near(arr, rgb, tol=12) -> int:
    return int((abs(arr - rgb).max(axis=-1) <= tol).sum())


@pytest.mark.timeout(150)
def test_structure_only_report(tmp_path, capsys):
    shards = _shards(tmp_path / "shards")
    out = tmp_path / "report.html"
    assert main(["spotcheck", *map(str, shards), "--n", "4", "--out", str(out), "--geometry", "tiny"]) == 0
    html = out.read_text()
    assert "structure only" in html and "<table class=\"stats\">" in html
    assert "the same image as in g-000" in html and "change caption of 40 words" in html
    assert re.search(r"<td>video</td><td>6</td>", html)
    assert html.count('<section class="sample"') == 4
    assert "http://" not in html.replace("http://www.w3.org", "") and "<script" not in html  # self-contained
    arr = _screenshot(out, tmp_path)
    assert _pixels_near(arr, HIST_BLUE) > 500  # the histograms rendered
    arr = _screenshot(out, tmp_path, height=4000)
    assert _pixels_near(arr, GREEN, tol=30) > 2000  # and the samples' images


@pytest.mark.timeout(240)
def test_scored_report_with_a_checkpoint(tmp_path_factory, tmp_path):
    import torch

    run_dir, shards = trained_run(tmp_path_factory)
    out = tmp_path / "scored.html"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc = main(["spotcheck", *map(str, shards), "--checkpoint", str(run_dir), "--n", "3", "--out", str(out),
                   "--steps", "3", "--caption-tokens", "8", "--seed", "1", "--device", "cpu"])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    html = out.read_text()
    assert html.count('<section class="sample"') == 3
    assert html.count("model caption:") == 6  # two images before a caption per sample; the last is a target
    assert html.count('alt="regenerated image') == 6  # every generation target
    assert html.count("CE/token") == 6 and html.count("velocity MSE") >= 6
    links = re.findall(r'<ol class="worst"><li><a href="#([^"]+)"', html)
    assert links and f'id="{links[0]}"' in html  # the worst list links into the page
    assert "background:hsl(" in html  # segments coloured by score
    arr = _screenshot(out, tmp_path, height=1800)
    assert _pixels_near(arr, SCORE_RED) > 300  # the per-kind score histogram rendered


@pytest.mark.timeout(120)
def test_bad_inputs(tmp_path, capsys):
    shards = _shards(tmp_path / "shards")
    corrupt = tmp_path / "corrupt.tar"
    corrupt.write_bytes(shards[0].read_bytes()[:3000])
    out = tmp_path / "r.html"
    assert main(["spotcheck", str(corrupt), str(shards[1]), "--n", "2", "--out", str(out), "--geometry", "tiny"]) == 0
    err = capsys.readouterr().err
    assert "corrupt.tar" in err and "truncated" in err
    assert "Problems (skipped)" in out.read_text()
    assert main(["spotcheck", str(corrupt), "--out", str(out), "--geometry", "tiny"]) == 1
    assert "no readable samples" in capsys.readouterr().err
    assert main(["spotcheck", str(tmp_path / "missing.tar"), "--out", str(out)]) == 2
    assert "no such shard" in capsys.readouterr().err
    assert main(["spotcheck", str(shards[1]), "--checkpoint", str(tmp_path / "norun"), "--out", str(out)]) == 2
    assert "--checkpoint: run folder" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "shards")


def _quality_run(out: Path) -> None:
    """A run folder: 5 video clips (change captions, one truncated, one a loop) and 1 web document (an image
    dropped as blurry inside it), a manifest with 3 clips filtered as static, and the run's config."""
    import json

    from schemas import CaptionerInfo, ImageSegment, Sample, ShardWriter, Source, TextSegment

    samples = []
    for i in range(5):
        text = "the cat the cat the cat the cat the cat" if i == 4 else f"the green block {i} slides right"
        segs = (ImageSegment(_jpeg(GREEN), "jpg", 64, 48, role="frame"),
                TextSegment(text, role="change", prompt_id="change_caption@v1", status="truncated" if i == 0 else "ok"),
                ImageSegment(_jpeg(GREEN), "jpg", 64, 48, generation=True, role="frame"))
        samples.append(Sample(f"v-{i}", "video", segs, Source("file:///v.mp4", span=(i, i + 1.0)),
                              CaptionerInfo("stub", "stub"), {"quality": {"motion": 0.1 + i / 10, "duration_s": 2.0}}))
    web = (TextSegment("Step one: loosen the bolts.", role="body"),
           TextSegment("a wheel", role="caption", prompt_id="image_caption@v1", status="ok"),
           ImageSegment(_jpeg(GREEN, (96, 48)), "jpg", 96, 48, role="image", provenance={"scores": {"clarity": 300.0}}))
    samples.append(Sample("w-0", "web", web, Source("https://pages.example/a"), CaptionerInfo("stub", "stub"),
                          {"image_log": [{"src": "https://pages.example/b.png", "stage": "images", "reason": "blurry",
                                          "scores": {"clarity": 12.0, "min_clarity": 50.0}}]}))
    with ShardWriter(out, "shard-r00") as w:
        for s in samples:
            w.write(s)
    recs = [{"id": f"c{j}", "input": "vid", "status": "filtered", "stage": "quality", "reason": "static",
             "scores": {"motion": 0.001 * j, "duration_s": 3.0}} for j in range(3)]
    recs += [{"id": s.key, "input": s.key, "status": "written", "shard": "shard-r00-000000.tar", "key": s.key,
              **({"images": s.meta["image_log"]} if s.kind == "web" else {})} for s in samples]  # counted once
    (out / "manifest").mkdir()
    (out / "manifest" / "shard-r00.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (out / "runs.jsonl").write_text(json.dumps({"attempt": 0, "config": {"quality": {"min_motion": 0.02,
                                                                                     "min_duration_s": 1.0}}}) + "\n")


@pytest.mark.timeout(150)
def test_quality_plots_answer_is_this_run_good(tmp_path):
    import numpy as np

    from pipelines.commands import spotcheck_plots as P
    from pipelines.commands.spotcheck import _ByteTokens
    from schemas import read_samples

    run = tmp_path / "run"
    _quality_run(run)
    q = P.RunQuality(_ByteTokens())
    for s in read_samples(sorted(run.glob("*.tar"))):
        q.add(s)
    q.add_run(run)
    figs = {"drops": P.figure_drop_rates(q), "scores": P.figure_filter_scores(q),
            "captions": P.figure_caption_lengths(q, estimated=True), "health": P.figure_text_health(q)}
    axes = {name: [ax for ax in f.axes if ax.get_visible()] for name, f in figs.items()}
    for name, axs in axes.items():
        for ax in axs:  # every panel titled, both axes labelled, units in the labels
            assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), (name, ax.get_title())
    # drop rate: 3 of 9 units (3 filtered clips, 6 written samples) dropped as static; 1 of the document's 2 images
    drops = axes["drops"][0]
    labels = [t.get_text() for t in drops.get_yticklabels()]
    widths = dict(zip(labels, (p.get_width() for p in drops.patches)))
    assert widths == {"unit · quality · static": pytest.approx(100 * 3 / 9), "image · images · blurry": 50.0}
    # filter scores: kept and dropped, on one set of bins, with the run's threshold drawn
    by_title = {ax.get_title(): ax for ax in axes["scores"]}
    motion = by_title["Clip motion"]
    assert [ln.get_xdata()[0] for ln in motion.lines] == [0.02] and motion.get_xlabel() == "share of pixels that change"
    assert {round(p.get_width(), 9) for p in motion.patches} == {round(motion.patches[0].get_width(), 9)}
    clarity = by_title["Image clarity"]
    assert [ln.get_xdata()[0] for ln in clarity.lines] == [50.0]  # the threshold the dropped image recorded
    assert sum(p.get_height() for p in clarity.patches) == 2  # the kept image and the dropped one
    # one value everywhere (every clip is 2 s, the dropped ones 3 s): still visible bars of equal width
    length = by_title["Shot (clip) length"]
    assert sorted(p.get_height() for p in length.patches if p.get_height()) == [3, 5]
    # caption lengths: one panel per role, the prompt's budget marked
    cap = {ax.get_title(): ax for ax in axes["captions"]}
    assert [ln.get_xdata()[0] for ln in cap["Caption length: change"].lines] == [30]
    assert [ln.get_xdata()[0] for ln in cap["Caption length: caption"].lines] == [48]
    # images per sample: integer bins centred on whole numbers; the web kind's single sample shows
    images = axes["health"][0]
    web_bars = [p for p in images.patches if p.get_label() == "web (1)" or p.get_height()]
    assert web_bars and all(float(p.get_x() + p.get_width() / 2).is_integer() for p in images.patches)
    # the looping caption shows in the repeated-n-gram rate; 1 of 5 change captions truncated
    ngram = axes["health"][1]
    top = max(p.get_x() + p.get_width() for p in ngram.patches if p.get_height())
    assert top > 50
    trunc = axes["health"][2]
    heights = {t.get_text(): None for t in trunc.get_xticklabels()}
    assert list(heights) == ["caption", "change"] and sorted(p.get_height() for p in trunc.patches) == [0, 20]
    for axs in axes.values():  # count axes have whole-number ticks
        for ax in axs:
            if ax.get_ylabel() in ("captions", "texts", "samples", "clips or images", "text segments", "images"):
                ticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
                assert all(float(t).is_integer() for t in ticks), (ax.get_title(), ticks)
    assert np.isclose(q.thresholds["duration_s"]["min_duration_s"], 1.0)


@pytest.mark.timeout(150)
def test_report_of_a_run_folder_has_the_quality_plots(tmp_path, capsys):
    run = tmp_path / "run"
    _quality_run(run)
    out = tmp_path / "r.html"
    assert main(["spotcheck", str(run), "--out", str(out), "--n", "2", "--geometry", "tiny"]) == 0
    html = out.read_text()
    for alt in ("drop rate per filter and reason", "filter score histograms with thresholds",
                "caption length per role with budgets", "images per sample, repeated n-gram rate, truncated texts"):
        assert f'alt="{alt}"' in html
