"""The MoT on CPU: it learns a packed batch, its two mask paths agree, routing is hard, samples stay apart."""

from __future__ import annotations

import pytest
import torch
from mot_helpers import photo_sample

from model.attention import CAUSAL, FULL, NOISE, MaskSpec, attend, block_mask, build_mask, dense_mask
from model.autoencoder import AutoencoderConfig, build_autoencoder
from model.data import pack, plan_sample
from model.mot import MoT, MoTConfig
from model.objective import compute_losses


def _setup(tiny, samples):
    mcfg, tok, dcfg = tiny
    torch.manual_seed(0)
    model = MoT(mcfg)
    ae = build_autoencoder(AutoencoderConfig(downsample=mcfg.latent_downsample))
    batch = pack([plan_sample(s, tok, mcfg, dcfg, None) for s in samples], tok, mcfg)
    return model, ae, batch


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.timeout(120)
def test_overfits_one_packed_batch(tiny):
    model, ae, batch = _setup(tiny, [photo_sample(i) for i in range(3)])
    mask = dense_mask(MaskSpec(batch.doc, batch.split, batch.mode))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), eps=1e-15)
    first = None
    for _ in range(120):
        out = compute_losses(model, ae, batch, mask, attend, _gen())
        first = first or (out["ce"].item(), out["mse"].item())
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    out = compute_losses(model, ae, batch, mask, attend, _gen())
    assert out["ce"].item() < 0.1 * first[0], (first, out["ce"].item())
    assert out["mse"].item() < 0.1 * first[1], (first, out["mse"].item())


def test_mask_rule_on_a_hand_built_pack():
    # doc 0: text(0-2) | noised image (3-4) | clean image (5-6) | text (7); doc 1: text (8-9)
    doc = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    split = torch.tensor([0, 0, 0, 1, 1, 2, 2, 3, 4, 4])
    mode = torch.tensor([CAUSAL] * 3 + [NOISE] * 2 + [FULL] * 2 + [CAUSAL] * 3)
    m = dense_mask(MaskSpec(doc, split, mode))
    assert m[1, 0] and not m[0, 1]  # causal text
    assert m[3, 4] and m[4, 3] and m[3, 2]  # noised image: whole inside, sees the text before
    assert not m[5, 3] and not m[7, 4]  # nothing later sees noised tokens
    assert m[5, 6] and m[7, 6] and m[7, 0]  # clean image whole; later text sees it
    assert not m[8, 7] and not m[9, 0] and m[9, 8]  # packed samples never see each other
    dense_blocks = block_mask(MaskSpec(doc, split, mode)).to_dense()[0, 0]
    assert dense_blocks.shape[0] >= 1  # one 128-tile covers the 10 tokens


@pytest.mark.timeout(120)
def test_flex_block_mask_matches_dense_mask(tiny):
    model, ae, batch = _setup(tiny, [photo_sample(i) for i in range(4)])
    spec = MaskSpec(batch.doc, batch.split, batch.mode)
    dense = build_mask(spec, "dense")
    blocks = build_mask(spec, "flex")
    # the block mask's tiles cover every allowed pair and skip only empty tiles
    T = dense.shape[0]
    tiles = blocks.to_dense()[0, 0].bool()  # (T/128, T/128)
    pairs = dense.reshape(T // 128, 128, T // 128, 128).any(3).any(1)
    assert torch.equal(tiles, pairs)
    with torch.no_grad():  # FlexAttention has no CPU backward; the forward runs eagerly
        a = compute_losses(model, ae, batch, dense, attend, _gen())
        b = compute_losses(model, ae, batch, blocks, attend, _gen())
    assert torch.allclose(a["ce_tok"], b["ce_tok"], atol=1e-4, rtol=1e-4)
    assert torch.allclose(a["mse_tok"], b["mse_tok"], atol=1e-5, rtol=1e-4)


def test_routing_by_gradients(tiny):
    model, ae, batch = _setup(tiny, [photo_sample(0)])
    T = batch.input_ids.shape[0]
    self_only = torch.eye(T, dtype=torch.bool)  # no mixing between tokens: each sees itself only
    h = model.embed(batch.input_ids, batch.kind, batch.vit_pixels, *_latents(model, ae, batch),
                    batch.vit_idx, batch.latent_idx)
    hidden, _ = model.forward_hidden(h, batch.position_ids, batch.und_idx, batch.gen_idx, self_only, attend)

    def grads_from(rows):
        model.zero_grad()
        hidden.index_select(0, rows).pow(2).sum().backward(retain_graph=True)
        lm = model.language_model.named_parameters()
        return {n: p.grad for n, p in lm if n.startswith(("model.layers", "model.norm"))}

    und_rows = batch.und_idx[batch.kind[batch.und_idx] == 1]  # ViT tokens
    text_rows = batch.und_idx[batch.kind[batch.und_idx] == 0]
    for rows in (und_rows, text_rows):
        g = grads_from(rows)
        assert all(v is None or not v.any() for n, v in g.items() if "_moe_gen" in n)
        assert any(v is not None and v.any() for n, v in g.items() if "_moe_gen" not in n)
    g = grads_from(batch.gen_idx)
    assert all(v is None or not v.any() for n, v in g.items() if "_moe_gen" not in n)
    assert any(v is not None and v.any() for n, v in g.items() if "_moe_gen" in n)


def _latents(model, ae, batch):
    from model.objective import latent_inputs

    x, t, pos, _, _ = latent_inputs(model.cfg, ae, batch, _gen())
    return x, t, pos


def test_packing_keeps_samples_apart(tiny):
    mcfg, tok, dcfg = tiny
    a, b, c = photo_sample(0), photo_sample(5), photo_sample(2)
    model, ae, alone = _setup(tiny, [a])
    packed = pack([plan_sample(s, tok, mcfg, dcfg, None) for s in (a, b)], tok, mcfg)
    other = pack([plan_sample(s, tok, mcfg, dcfg, None) for s in (a, c)], tok, mcfg)
    n = alone.n_real
    outs = []
    with torch.no_grad():
        for batch in (alone, packed, other):
            mask = dense_mask(MaskSpec(batch.doc, batch.split, batch.mode))
            x, t, pos = _latents(model, ae, batch)
            h = model.embed(batch.input_ids, batch.kind, batch.vit_pixels, x, t, pos, batch.vit_idx,
                            batch.latent_idx)
            outs.append(model.forward_hidden(h, batch.position_ids, batch.und_idx, batch.gen_idx, mask, attend)[0])
    assert torch.allclose(outs[0][:n], outs[1][:n], atol=1e-5)
    assert torch.allclose(outs[1][:n], outs[2][:n], atol=1e-5)


def test_kv_cache_matches_full_forward(tiny):
    model, ae, batch = _setup(tiny, [photo_sample(1)])
    n = batch.n_real
    mask = dense_mask(MaskSpec(batch.doc, batch.split, batch.mode))[:n, :n]
    with torch.no_grad():
        x, t, pos = _latents(model, ae, batch)
        h = model.embed(batch.input_ids, batch.kind, batch.vit_pixels, x, t, pos, batch.vit_idx, batch.latent_idx)[:n]
        full, _ = model.forward_hidden(h, batch.position_ids[:n], batch.und_idx[batch.und_idx < n],
                                       batch.gen_idx[batch.gen_idx < n], mask, attend)
        s = int((batch.split[:n] == batch.split[n - 1]).nonzero()[0])  # the last split (the noised image)
        _, past = model.forward_hidden(h[:s], batch.position_ids[:s], batch.und_idx[batch.und_idx < s],
                                       batch.gen_idx[batch.gen_idx < s], mask[:s, :s], attend)
        tail_und = batch.und_idx[(batch.und_idx >= s) & (batch.und_idx < n)] - s
        tail_gen = batch.gen_idx[(batch.gen_idx >= s) & (batch.gen_idx < n)] - s
        assert tail_gen.numel() and s > 0
        tail, _ = model.forward_hidden(h[s:], batch.position_ids[s:n], tail_und, tail_gen, mask[s:, :],
                                       attend, past_kvs=past)
    assert torch.allclose(full[s:], tail, atol=1e-5)


def test_presets_sizes():
    cfg = MoTConfig.preset("base")
    D, L, F_, V = cfg.d_model, cfg.n_layers, cfg.d_ff, cfg.vocab_size
    attn = D * cfg.n_heads * cfg.head_dim * 2 + 2 * D * cfg.n_kv_heads * cfg.head_dim
    per_expert = L * (attn + 3 * D * F_) + 2 * V * D
    assert 0.4e9 < per_expert < 0.6e9  # "about 0.5B per expert", counted without allocating
    tiny = MoT(MoTConfig.preset("tiny"))
    assert tiny.num_params("und") == tiny.num_params("gen")
    names = dict(tiny.named_parameters())
    assert "language_model.model.layers.0.self_attn.q_proj_moe_gen.weight" in names
    assert "language_model.model.layers.0.mlp_moe_gen.gate_proj.weight" in names
    assert not tiny.llm2vae.weight.any()  # zero-initialised velocity head
