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
