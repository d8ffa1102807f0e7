"""``braid score`` and ``braid filter`` with a ``braid train`` checkpoint: one parquet row per sample,
resumable scoring, filtering with a safe condition language and full accounting, and fidelity (corrupted
twins of clean samples score worse)."""

from __future__ import annotations

import io
import json
import random
import shutil
from pathlib import Path

import pytest

from pipelines.commands.cli import main

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 60, 230), "yellow": (230, 220, 40)}
DIRECTIONS = {"left": -6, "right": 6}
TRAIN = """preset: tiny
train: {steps: 400, lr: 0.003, warmup: 5, schedule: constant, eval_every: 1000, ckpt_every: 1000}
"""


def _frame(colour: str, x: int) -> bytes:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (64, 48), (90, 90, 90))
    ImageDraw.Draw(im).rectangle([x, 14, x + 20, 34], fill=COLOURS[colour])
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def clip(i: int, colour: str, direction: str):
    """A synthetic video clip: a coloured square moving; each change caption names its colour and direction."""
    from schemas import CaptionerInfo, ImageSegment, Sample, Source, TextSegment

    x0 = 8 if direction == "right" else 36
    segs = []
    for k in range(3):
        segs.append(ImageSegment(_frame(colour, x0 + DIRECTIONS[direction] * k), "png", 64, 48, understanding=True,
                                 generation=k > 0, role="frame"))
        if k < 2:
            segs.append(TextSegment(f"the {colour} square moves {direction}", role="change", loss=True))
    return Sample(f"c-{i:04d}", "video", tuple(segs), Source(f"file:///clip{i}.mp4", span=(0.0, 1.0)),
                  CaptionerInfo("stub", "stub", ("change_caption@v1",)))


def clips(start: int, n: int) -> list:
    combos = [(c, d) for c in COLOURS for d in DIRECTIONS]
    return [clip(i, *combos[i % len(combos)]) for i in range(start, start + n)]


def train_on_clips(root: Path, n_clips: int, steps: int) -> tuple[Path, list[Path]]:
    """(run folder, shards of 16 clips each) of the tiny preset trained for ``steps`` steps on ``n_clips`` clips."""
    import torch

    from schemas import ShardWriter

    with ShardWriter(root / "shards", max_count=16) as w:
        for s in clips(0, n_clips):
            w.write(s)
    (root / "train.yaml").write_text(TRAIN.replace("steps: 400", f"steps: {steps}"))
    shards = sorted((root / "shards").glob("*.tar"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before the per-test thread setting
    try:
        assert main(["train", *map(str, shards), "--out", str(root / "run"), "--config", str(root / "train.yaml"),
                     "--device", "cpu"]) == 0
    finally:
        torch.set_num_threads(threads)
    return root / "run", shards


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run folder, two training shards) of the tiny preset trained briefly on the clips."""
    return train_on_clips(tmp_path_factory.mktemp("score_run"), 32, 400)


def _rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


@pytest.mark.timeout(300)
def test_score_every_sample_and_resume(trained, tmp_path, capsys):
    run, shards = trained
    corrupt = tmp_path / "corrupt.tar"
    corrupt.write_bytes(shards[1].read_bytes()[:5000])
    out = tmp_path / "scores.parquet"
    assert main(["score", str(shards[0]), "--checkpoint", str(run), "--out", str(out), "--batch-size", "5",
                 "--device", "cpu"]) == 0
    first = {r["key"]: r for r in _rows(out)}
    assert len(first) == 16 and not out.with_name("scores.parquet.parts").exists()
    shutil.copy(out, tmp_path / "first.parquet")
    capsys.readouterr()
    assert main(["score", *map(str, shards), str(corrupt), "--checkpoint", str(run), "--out", str(out),
                 "--batch-size", "5", "--device", "cpu"]) == 0
    assert "16 already scored" in capsys.readouterr().out  # resumed: the first shard is not scored again
    rows = _rows(out)
    doc = json.loads((run / "config.json").read_text())
    w_ce, w_mse = ({**doc["model"], **doc.get("train", {})}.get(k) for k in ("ce_weight", "mse_weight"))
    samples = [r for r in rows if r["key"] and not r["shard"].endswith("corrupt.tar")]
    assert len(samples) == 32 and len({r["key"] for r in samples}) == 32  # one row per sample
    for r in samples:
        assert r["status"] == "scored" and r["kind"] == "video" and r["source"].startswith("file:///clip")
        assert len(r["text_ce"]) == 2 and len(r["image_mse"]) == 2  # two captions, two generation targets
        assert r["n_text_tokens"] > 0 and r["n_image_tokens"] == 2 * 12 and r["n_tokens"] > r["n_text_tokens"]
        assert r["score"] == pytest.approx(w_ce * r["ce"] + w_mse * r["mse"])
        assert [s["kind"] for s in r["segments"]] == ["text", "image", "text", "image"]
    for k, r in first.items():  # resumed rows are the first run's
        assert next(x for x in samples if x["key"] == k)["score"] == r["score"]
    bad = [r for r in rows if r["shard"].endswith("corrupt.tar")]
    assert bad and all(r["status"] in ("scored", "failed") for r in bad)
    assert any(r["status"] == "failed" and r["key"] == "" and "truncated" in r["note"] for r in bad)

    # a run killed after some batches leaves its parts; the next run takes them and scores only the rest
    killed = tmp_path / "killed.parquet"
    parts = tmp_path / "killed.parquet.parts"
    parts.mkdir()
    shutil.copy(tmp_path / "first.parquet", parts / "part-00000.parquet")
    capsys.readouterr()
    assert main(["score", *map(str, shards), "--checkpoint", str(run), "--out", str(killed), "--device", "cpu"]) == 0
    assert "16 already scored" in capsys.readouterr().out and not parts.exists()
    assert {r["key"]: r["score"] for r in _rows(killed)} == {r["key"]: r["score"] for r in samples}

    # a different seed is a different score set: refused, not mixed
    assert main(["score", str(shards[0]), "--checkpoint", str(run), "--out", str(out), "--seed", "3"]) == 2
    assert "seed" in capsys.readouterr().err


@pytest.mark.timeout(300)
def test_filter_keeps_what_the_condition_says_and_accounts_for_the_rest(trained, tmp_path, capsys):
    from schemas import load_manifest, read_samples

    run, shards = trained
    scores = tmp_path / "scores.parquet"
    assert main(["score", *map(str, shards), "--checkpoint", str(run), "--out", str(scores), "--device", "cpu"]) == 0
    rows = {r["key"]: r for r in _rows(scores)}
    median = sorted(r["score"] for r in rows.values())[16]
    extra = tmp_path / "extra"
    from schemas import ShardWriter

    with ShardWriter(extra) as w:
        w.write(clip(99, "red", "left"))  # a sample the scores file does not know
    out = tmp_path / "kept"
    where = f"score < {median} and (kind == 'video' or kind == \"web\") and not mse > 1e9"
    assert main(["filter", *map(str, shards), str(extra), "--scores", str(scores), "--where", where,
                 "--out", str(out), "--max-count", "5"]) == 0
    kept = [s.key for s in read_samples(sorted(out.glob("*.tar")))]
    expect = sorted(k for k, r in rows.items() if r["score"] < median)
    assert sorted(kept) == expect and len(kept) == 16
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["inputs"], summary["written"], summary["filtered"], summary["failed"]) == (33, 16, 16, 1)
    records = load_manifest(out)
    for k, r in rows.items():
        rec = records[k]
        if r["score"] < median:
            assert rec["status"] == "written" and (out / rec["shard"]).is_file()
        else:  # dropped samples carry the scores that decided
            assert rec["status"] == "filtered" and rec["scores"]["score"] == r["score"]
            assert rec["scores"]["text_ce"] == r["text_ce"] and where in rec["reason"]
    assert records["c-0099"]["status"] == "failed" and "no row in the scores file" in records["c-0099"]["message"]

    # re-running into the same folder resumes: nothing is written twice
    assert main(["filter", *map(str, shards), str(extra), "--scores", str(scores), "--where", where,
                 "--out", str(out)]) == 0
    assert sorted(s.key for s in read_samples(sorted(out.glob("*.tar")))) == expect

    # bad conditions are configuration errors, never evaluated
    capsys.readouterr()
    for bad, msg in [("score <", "ends too early"), ("scroe < 2", "unknown column 'scroe'"),
                     ("__import__('os').system('x')", "cannot read"), ("score < 2 or", "ends too early"),
                     ("(score < 2", "not closed"), ("score < 2 kind", "unexpected"), ("score ~ 2", "cannot read")]:
        assert main(["filter", str(shards[0]), "--scores", str(scores), "--where", bad,
                     "--out", str(tmp_path / "x")]) == 2, bad
        assert msg in capsys.readouterr().err, bad
    assert not (tmp_path / "x").exists()


def test_where_semantics():
    from pipelines.commands.where import compile_where

    cols = ("score", "kind", "note")
    row = {"score": 2.0, "kind": "video", "note": None}
    assert compile_where("score <= 2 and kind == 'video'", cols)(row)
    assert not compile_where("score > 2 or kind != 'video'", cols)(row)
    assert compile_where("not (score > 3) and note == null", cols)(row)
    assert not compile_where("note < 3", cols)(row)  # null orders with nothing
    assert not compile_where("kind < 3", cols)(row)  # nor a string with a number
    assert compile_where("score == 2.0 and -1 < score and 1e0 < score", cols)(row)


def _swap_captions(a, b):
    from schemas import TextSegment

    texts = iter([s for s in b.segments if isinstance(s, TextSegment)])
    return a.replace(key=a.key + "-swap", segments=tuple(next(texts) if isinstance(s, TextSegment) else s
                                                         for s in a.segments))


def _replace_frame(a, b, index: int, suffix: str):
    segs = list(a.segments)
    segs[index] = segs[index].__class__(b.segments[index].data, "png", 64, 48, understanding=True,
                                        generation=segs[index].generation, role="frame")
    return a.replace(key=a.key + suffix, segments=tuple(segs))


def _noise_target(a, seed: int):
    import numpy as np
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    segs = list(a.segments)
    segs[-1] = segs[-1].__class__(buf.getvalue(), "png", 64, 48, understanding=True, generation=True, role="frame")
    return a.replace(key=a.key + "-noise", segments=tuple(segs))


@pytest.mark.timeout(300)
def test_corrupted_twins_score_worse(trained, tmp_path):
    """Held-out clips against four corruptions each (captions swapped with another clip's, the first or the
    middle frame replaced by another clip's, the target replaced by noise): at least 95% of all pairs score
    worse, and at least 90% of each kind."""
    from schemas import ShardWriter

    run, _ = trained
    clean = clips(100, 24)
    rng = random.Random(0)
    twins = []
    for a in clean:
        colour, direction = a.segments[1].text.split()[1], a.segments[1].text.split()[-1]
        other = [b for b in clean if colour not in b.segments[1].text and direction not in b.segments[1].text]
        b = rng.choice(other)
        twins += [("swap", a.key, _swap_captions(a, b)), ("first frame", a.key, _replace_frame(a, b, 0, "-first")),
                  ("middle frame", a.key, _replace_frame(a, b, 2, "-middle")),
                  ("noise", a.key, _noise_target(a, rng.randrange(1 << 30)))]
    with ShardWriter(tmp_path / "eval") as w:
        for s in clean + [t for _, _, t in twins]:
            w.write(s)
    out = tmp_path / "scores.parquet"
    # nine timesteps, not the default three: a steadier estimate of each image's flow-matching error
    assert main(["score", str(tmp_path / "eval"), "--checkpoint", str(run), "--out", str(out), "--device", "cpu",
                 "--timesteps", "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9"]) == 0
    score = {r["key"]: r["score"] for r in _rows(out)}
    worse = {kind: [score[t.key] > score[k] for kk, k, t in twins if kk == kind]
             for kind in ("swap", "first frame", "middle frame", "noise")}
    rates = {k: sum(v) / len(v) for k, v in worse.items()}
    overall = sum(sum(v) for v in worse.values()) / len(twins)
    assert overall >= 0.95 and all(r >= 0.9 for r in rates.values()), (overall, rates)
