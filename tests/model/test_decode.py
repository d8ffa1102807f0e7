"""The static-cache decoder (model.decode) on a tiny bundled MoT: each step's logits equal the full forward's
at that position, and a context longer than the cache is refused with a clear message."""

from __future__ import annotations

import pytest
import torch

from model.attention import CAUSAL, MaskSpec, dense_mask
from model.context import attend_gqa
from model.decode import StaticDecoder, capacity_for
from model.mot import Inputs, MoT, MoTConfig


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MoT(MoTConfig.preset("tiny")).eval().requires_grad_(False)


def _full_logits(model, ids):
    n = len(ids)
    ids = torch.tensor(ids)
    mask = dense_mask(MaskSpec(torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long),
                               torch.full((n,), CAUSAL)))
    rows = torch.arange(n)
    out = model(Inputs(rows, (rows, rows[:0]), mask, attend_gqa, input_ids=ids))
    return model.logits(out.hidden)


def test_steps_give_the_logits_of_the_full_forward(model):
    ids = torch.randint(0, 512, (20,), generator=torch.Generator().manual_seed(1)).tolist()
    full = _full_logits(model, ids)
    dec = StaticDecoder(model, capacity_for(len(ids)))
    prompt = 8
    emb = model.language_model.model.embed_tokens(torch.tensor(ids[:prompt]))
    h = dec.prefill(emb, torch.arange(prompt), torch.ones(prompt, prompt, dtype=torch.bool).tril())
    assert torch.allclose(model.logits(h), full[:prompt], atol=1e-4)
    for i in range(prompt, len(ids)):
        assert torch.allclose(dec.step(ids[i], i), full[i], atol=1e-4), i
    assert dec.length == len(ids)
    kv = dec.kvs()
    assert len(kv) == model.cfg.n_layers and kv[0][0].shape == (1, model.cfg.n_kv_heads, len(ids), model.cfg.head_dim)


def test_a_context_over_the_capacity_is_refused(model):
    dec = StaticDecoder(model, 4)
    emb = model.language_model.model.embed_tokens(torch.arange(5))
    with pytest.raises(ValueError, match="needs 5 cache slots, the decoder holds 4"):
        dec.prefill(emb, torch.arange(5), torch.ones(5, 5, dtype=torch.bool).tril())
