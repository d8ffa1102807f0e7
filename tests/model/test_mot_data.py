"""Shards -> sequence plans -> packs: BAGEL's layout, condition dropout, budgets and recorded skips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mot_helpers import photo_sample, write_shards

from model.attention import FULL, NOISE
from model.autoencoder import AutoencoderConfig, AutoencoderError, build_autoencoder
from model.data import DataConfig, DataError, ShardStream, TextTokenizer, pack, plan_sample
from model.mot import LATENT, VIT


def test_plan_follows_bagel_layout(tiny):
    mcfg, tok, dcfg = tiny
    sample = photo_sample(0)  # frame (und) | caption | frame (gen) | caption | frame (gen, last)
    plan = plan_sample(sample, tok, mcfg, dcfg, None)
    layout = [(p.kind, p.seg, p.noised) for p in plan.pieces]
    assert layout == [("vit", 0, False), ("text", 1, False), ("latent", 2, True), ("latent", 2, False),
                      ("vit", 2, False), ("text", 3, False), ("latent", 4, True)]
    text = plan.pieces[1]
    assert text.ids[0] == tok.bos and text.ids[-1] == tok.eos and text.loss
    assert tok.decode(text.ids[1:-1]) == sample.segments[1].text

    b = pack([plan], tok, mcfg)
    n = b.n_real
    assert b.input_ids.shape[0] % 128 == 0 and n == plan.n_tokens
    # next-token targets inside each loss-bearing text split, nowhere else
    starts = (b.input_ids[:n] == tok.bos).nonzero().squeeze(1).tolist()
    for s in starts:
        L = len(text.ids)  # both captions tokenise to the same length (same words, different digit)
        assert b.ce_targets[b.ce_idx == s].tolist() == [int(b.input_ids[s + 1])]
        assert not (b.ce_idx == s + L - 1).any()  # <|im_end|> predicts nothing
    modes = {(int(b.kind[i]), int(b.mode[i])) for i in range(n) if b.kind[i] != 0}
    assert modes == {(VIT, FULL), (LATENT, NOISE), (LATENT, FULL)}
    # the clean latent reuses its noised twin's RoPE position; the ViT split after it comes next
    pos = {int(b.split[i]): int(b.position_ids[i]) for i in range(n)}
    noised, clean, vit = sorted({int(b.split[i]) for i in range(n) if b.seg[i] == 2})
    assert pos[noised] == pos[clean] and pos[vit] == pos[clean] + 1
    assert b.latent_entries == [(0, True), (0, False), (1, True)]


def test_condition_dropout_only_drops_conditions(tiny):
    mcfg, tok, _ = tiny
    all_drop = DataConfig(text_dropout=1.0, vit_dropout=1.0, clean_dropout=1.0)
    plan = plan_sample(photo_sample(1), tok, mcfg, all_drop, np.random.default_rng(0))
    assert [(p.kind, p.noised) for p in plan.pieces] == [("text", False), ("latent", True), ("text", False),
                                                         ("latent", True)]  # loss-bearing parts stay
    from schemas import Sample, Source, TextSegment

    und_only = Sample("u-1", "web", (photo_sample(1).segments[0], TextSegment("what is this", loss=False),
                                     TextSegment("a cat", loss=True)), Source("file:///x"))
    plan = plan_sample(und_only, tok, mcfg, all_drop, np.random.default_rng(0))
    assert [p.kind for p in plan.pieces] == ["vit", "text", "text"]  # no generation target: nothing dropped


def test_tokenizer_round_trip(tmp_path, tiny):
    _, tok, _ = tiny
    tok.save(tmp_path / "tok")
    again = TextTokenizer.load(tmp_path / "tok")
    text = "the ball moves left — ünïcode 123"
    assert again.encode(text) == tok.encode(text) and again.decode(again.encode(text)) == text
    assert (again.bos, again.eos, again.vision_start) == (tok.bos, tok.eos, tok.vision_start)
    with pytest.raises(DataError, match="no tokenizer.json"):
        TextTokenizer.load(tmp_path)


def test_pixel_autoencoder_is_exact():
    ae = build_autoencoder(AutoencoderConfig(downsample=4))
    x = torch.rand(3, 24, 32) * 2 - 1
    z = ae.encode(x.unsqueeze(0))
    assert z.shape == (1, 48, 6, 8)
    assert torch.allclose(ae.decode(z)[0], x)
    with pytest.raises(AutoencoderError, match="loader"):
        build_autoencoder(AutoencoderConfig(kind="vae"))


def test_stream_records_skips_and_resumes_in_place(tmp_path, tiny):
    mcfg, tok, _ = tiny
    shards = write_shards(tmp_path / "ok", 6, 3)
    bad = tmp_path / "corrupt.tar"
    bad.write_bytes(b"this is not a tar file" * 50)
    dcfg = DataConfig(max_tokens=160, shuffle_shards=False)  # one sample (92 tokens) per pack
    big = DataConfig(max_tokens=60, shuffle_shards=False)
    stream = ShardStream([str(bad), *map(str, shards)], tok, mcfg, dcfg)
    packs = stream.packs()
    got = [next(packs) for _ in range(8)]
    keys = [p[0][0].key for p in got]
    assert keys[:6] == [f"s-{i:04d}" for i in range(6)] and keys[6] == "s-0000"  # next epoch starts over
    assert any("corrupt.tar" in s["shard"] and "not a readable tar" in s["reason"] for s in stream.skips)
    # resuming from a saved position yields exactly the pack that came next
    epoch, start = got[2][1]
    again = ShardStream([str(bad), *map(str, shards)], tok, mcfg, dcfg).packs(epoch, start)
    assert next(again)[0][0].key == keys[3]
    # every sample longer than the budget: recorded, then a clear error instead of an endless loop
    tight = ShardStream([str(s) for s in shards], tok, mcfg, big)
    with pytest.raises(DataError, match="no usable samples"):
        next(tight.packs())
    assert all("longer than the budget 60" in s["reason"] for s in tight.skips) and len(tight.skips) == 6
