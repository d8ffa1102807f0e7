"""Packs stored sorted by expert (the training layout): same losses and gradients as sequence order."""

from __future__ import annotations

import pytest
import torch
from mot_helpers import photo_sample

from model.attention import attend, build_mask
from model.autoencoder import AutoencoderConfig, build_autoencoder
from model.data import LATENT, pack, plan_sample
from model.mot import MoT
from model.objective import compute_losses


def _losses(model, ae, batch, kind="dense", grad=True):
    out = compute_losses(model, ae, batch, build_mask(batch.mask_spec(), kind), attend, torch.Generator().manual_seed(3))
    if not grad:
        return out, None
    model.zero_grad()
    out["loss"].backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.timeout(120)
def test_sorted_pack_gives_the_same_losses_and_gradients(tiny):
    mcfg, tok, dcfg = tiny
    plans = [plan_sample(photo_sample(i), tok, mcfg, dcfg, None) for i in range(3)]
    seq = pack(plans, tok, mcfg)
    srt = pack(plans, tok, mcfg, sort_experts=True, length=seq.input_ids.shape[0] + 128)
    n_und = srt.n_und
    assert (srt.kind[:n_und] != LATENT).all() and (srt.kind[n_und:srt.n_real] == LATENT).all()
    assert srt.n_real == seq.n_real and (srt.doc[srt.n_real:] == len(plans)).all()  # padding last, its own sample
    n = srt.n_real
    assert torch.equal(srt.order[:n].sort().values, torch.arange(n))  # real rows: a permutation of the sequence
    assert torch.equal(srt.input_ids[:n], seq.input_ids[srt.order[:n]])
    torch.manual_seed(0)
    model = MoT(mcfg)
    ae = build_autoencoder(AutoencoderConfig(downsample=mcfg.latent_downsample))
    a, ga = _losses(model, ae, seq)
    b, gb = _losses(model, ae, srt)
    assert torch.allclose(a["ce_tok"], b["ce_tok"], atol=1e-5, rtol=1e-4)
    assert torch.allclose(a["mse_tok"], b["mse_tok"], atol=1e-6, rtol=1e-4)
    assert ga.keys() == gb.keys()
    for name in ga:
        assert torch.allclose(ga[name], gb[name], atol=1e-6, rtol=1e-3), name
    with torch.no_grad():  # the block mask follows the sequence order too
        c, _ = _losses(model, ae, srt, "flex", grad=False)
    assert torch.allclose(a["ce_tok"], c["ce_tok"], atol=1e-4, rtol=1e-4)
    assert torch.allclose(a["mse_tok"], c["mse_tok"], atol=1e-5, rtol=1e-4)
