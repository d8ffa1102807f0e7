"""Inference on a briefly trained tiny run: cached decoding equals full recomputation, the context layout
equals training's, the Euler sampler is deterministic and in range, ``braid infer`` works end to end and
bad run folders give one clear sentence."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from mot_helpers import photo_sample
from spot_run import trained_run

from model.infer import Inferencer, TextGenConfig
from model.run_folder import InferError, load_run
from model.sampler import ImageGenConfig, apply_cfg
from pipelines.commands.cli import main
from schemas import ImageSegment


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return trained_run(tmp_path_factory)[0]


@pytest.fixture(scope="module")
def inf(run_dir):
    return Inferencer(load_run(run_dir, "cpu"))


def _context(inf, sample, upto: int, cached: bool = True):
    """The sample's segments before ``upto`` in the training layout."""
    ctx = inf.new_context()
    for seg in sample.segments[:upto]:
        if isinstance(seg, ImageSegment):
            ctx = inf.add_image(ctx, seg.data, seg.width, seg.height, vae=seg.generation, cached=cached)
        else:
            ctx = inf.add_text(ctx, seg.text, cached=cached)
    return ctx


@pytest.mark.timeout(120)
def test_kv_cache_decoding_equals_full_sequence_decoding(inf):
    s = photo_sample(101)
    for cfg in (TextGenConfig(max_new_tokens=12), TextGenConfig(max_new_tokens=12, temperature=1.5, top_k=50)):
        cached = inf.generate_text(_context(inf, s, 3), cfg, seed=5)
        full = inf.generate_text(_context(inf, s, 3, cached=False), cfg, seed=5, cached=False)
        assert cached[2] == full[2] and cached[2], (cached, full)
        assert cached[1].pos == full[1].pos and cached[1].length == full[1].length
        # the context after the generated segment (the decoder's cache) reads on as the recomputed one does
        after_c, after_f = inf.text_ce(cached[1], "then it stops"), inf.text_ce(full[1], "then it stops", cached=False)
        assert torch.allclose(after_c, after_f, atol=1e-4)
    # and the teacher-forced view: every token's CE the same both ways
    a = inf.text_ce(_context(inf, s, 3), "the ball moves left 7")
    b = inf.text_ce(_context(inf, s, 3, cached=False), "the ball moves left 7", cached=False)
    assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.timeout(120)
def test_context_layout_matches_training_layout(inf):
    """The CE of a caption read after a context built by the inferencer equals the CE that scoring (the
    training code path: plan, pack, dense mask) gives the same segment."""
    from model.score import score_sample

    s = photo_sample(102)  # image, caption, generation image, caption, generation image
    sc = score_sample(inf.b, s)
    ce = inf.text_ce(_context(inf, s, 3), s.segments[3].text)
    assert abs(float(ce.mean()) - sc.segment(3).value) < 1e-4
    # the model learned the captions: its own caption after the first image is a training caption
    text, _, ids = inf.generate_text(_context(inf, s, 1), TextGenConfig(max_new_tokens=16))
    assert ids and any(c in text for c in ("ball", "cat", "car", "waves")), text


@pytest.mark.timeout(120)
def test_sampler_is_deterministic_in_shape_and_range(inf):
    s = photo_sample(103)
    full, cfg_text = _context(inf, s, 4), _context(inf, s, 3)
    cfg_img = inf.add_text(inf.new_context(), s.segments[1].text)
    cfg_img = inf.add_text(cfg_img, s.segments[3].text)
    g = ImageGenConfig(steps=6, cfg_text_scale=3.0, cfg_img_scale=1.5)
    a = inf.generate_image(full, 64, 48, g, seed=3, cfg_text_ctx=cfg_text, cfg_img_ctx=cfg_img)
    b = inf.generate_image(full, 64, 48, g, seed=3, cfg_text_ctx=cfg_text, cfg_img_ctx=cfg_img)
    c = inf.generate_image(full, 64, 48, g, seed=4, cfg_text_ctx=cfg_text, cfg_img_ctx=cfg_img)
    plain = inf.generate_image(full, 64, 48, ImageGenConfig(steps=6), seed=3)
    assert a.shape == (3, 24, 32)  # 64x48 fitted into the tiny preset's 32-pixel generation side
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, plain)
    assert a.min() >= -1 and a.max() <= 1 and a.std() > 0.05
    for renorm in ("channel", "text_channel"):
        out = inf.generate_image(full, 32, 32, ImageGenConfig(steps=2, cfg_renorm_type=renorm), seed=1,
                                 cfg_text_ctx=cfg_text, cfg_img_ctx=cfg_img)
        assert out.shape == (3, 32, 32) and torch.isfinite(out).all()
    with pytest.raises(InferError, match="cfg_renorm_type"):
        inf.generate_image(full, 32, 32, ImageGenConfig(cfg_renorm_type="nope"))


def test_guidance_interval_and_renormalisation(inf, monkeypatch):
    calls = []
    real = inf._velocity

    def spy(ctx, x, t, hw, pos):
        calls.append((round(t, 6), ctx.length))
        return real(ctx, x, t, hw, pos)

    monkeypatch.setattr(inf, "_velocity", spy)
    s = photo_sample(100)
    full, cfg_text = _context(inf, s, 2), _context(inf, s, 1)
    g = ImageGenConfig(steps=10, timestep_shift=1.0, cfg_text_scale=4.0, cfg_interval=(0.4, 1.0))
    inf.generate_image(full, 32, 32, g, seed=0, cfg_text_ctx=cfg_text)
    guided = sorted({t for t, n in calls if n == cfg_text.length})
    assert guided == [round(0.5 + i / 10, 6) for i in range(6)]  # t = 1.0 ... 0.5: inside (0.4, 1]
    v, vt = torch.randn(16, 8), torch.randn(16, 8)
    plain = apply_cfg(v, vt, None, 4.0, 1.0, "global", 1.0)  # renorm_min 1: no rescaling
    assert torch.allclose(plain, vt + 4.0 * (v - vt))
    glob = apply_cfg(v, vt, None, 4.0, 1.0, "global", 0.0)
    assert glob.norm() <= v.norm() * (1 + 1e-5)
    chan = apply_cfg(v, vt, None, 4.0, 1.0, "channel", 0.0)
    assert (chan.norm(dim=-1) <= v.norm(dim=-1) * (1 + 1e-5)).all()


@pytest.mark.timeout(120)
def test_braid_infer_writes_an_image_text_and_a_plan(run_dir, tmp_path, capsys):
    img = tmp_path / "in.jpg"
    img.write_bytes(photo_sample(100).segments[0].data)
    out = tmp_path / "out.png"
    rc = main(["infer", "--checkpoint", str(run_dir), "--image", str(img), "--prompt", "the ball moves left",
               "--out", str(out), "--steps", "4", "--think", "--max-tokens", "8", "--device", "cpu"])
    assert rc == 0
    from PIL import Image

    with Image.open(out) as im:
        assert im.size == (32, 24)  # the input image's size, fitted to the generation side
    assert (tmp_path / "out.think.txt").read_text().startswith("<think>")
    txt = tmp_path / "caption.txt"
    assert main(["infer", "--checkpoint", str(run_dir), "--image", str(img), "--prompt", "what happens",
                 "--out", str(txt), "--max-tokens", "6", "--device", "cpu"]) == 0
    assert txt.read_text().strip()


def test_bad_run_folders_give_clear_messages(run_dir, tmp_path, capsys):
    def infer(ckpt):
        rc = main(["infer", "--checkpoint", str(ckpt), "--prompt", "x", "--out", str(tmp_path / "o.txt")])
        return rc, capsys.readouterr().err

    rc, err = infer(tmp_path / "nope")
    assert rc == 2 and "does not exist" in err
    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["model"]["d_model"] = 96
    (bad / "config.json").write_text(json.dumps(cfg))
    rc, err = infer(bad)
    assert rc == 2 and "does not match config.json" in err and err.count("\n") == 1
    (bad / "config.json").write_text("{not json")
    rc, err = infer(bad)
    assert rc == 2 and "not valid JSON" in err
    shutil.rmtree(bad)
    shutil.copytree(run_dir, bad)
    shutil.rmtree(bad / "tokenizer")
    rc, err = infer(bad)
    assert rc == 2 and "tokenizer" in err and "missing" in err
    shutil.copytree(run_dir / "tokenizer", bad / "tokenizer")
    w = bad / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    rc, err = infer(bad)
    assert rc == 2 and "not a readable safetensors file" in err
    with pytest.raises(InferError, match="holds no weights"):
        w.unlink()
        load_run(bad)
