"""The mask builders the trainer and the benchmark baselines rely on: block-mask tiles built on the host from
the split structure equal the tiles classified from the dense mask, the allowed-pair count (the attention
FLOPs of MFU) equals the dense mask's, and per-sample SDPA (BAGEL's dense path) attends as the dense mask."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from mot_helpers import photo_bytes, photo_sample

from model.attention import BLOCK_SIZE, _tiles_from_counts, allowed_pairs, attend, block_tiles, dense_mask, sample_masks
from model.data import pack, plan_sample


def _big(i: int):
    """photo_sample with 128 x 96 images: splits of a few hundred tokens, so some tiles are wholly allowed."""
    from schemas import ImageSegment

    s = photo_sample(i, n_images=2 + i % 2)
    segs = [ImageSegment(photo_bytes(i + j, (128, 96)), "jpg", 128, 96, understanding=True,
                         generation=seg.generation, role="frame") if isinstance(seg, ImageSegment) else seg
            for j, seg in enumerate(s.segments)]
    return s.replace(segments=tuple(segs))


@pytest.fixture
def packs(tiny):
    mcfg, tok, dcfg = tiny
    mcfg = mcfg.replace(gen_max_side=128, vit_image_size=64)
    plans = [plan_sample(_big(i), tok, mcfg, dcfg, None) for i in range(6)]
    return {"seq": pack(plans, tok, mcfg), "sorted": pack(plans, tok, mcfg, sort_experts=True)}


@pytest.mark.parametrize("layout", ["seq", "sorted"])
def test_host_tiles_and_pair_count_equal_the_dense_masks(packs, layout):
    batch = packs[layout]
    spec = batch.mask_spec()
    dense = dense_mask(spec)
    n = dense.shape[0]
    nb = -(-n // BLOCK_SIZE)
    assert nb >= 8  # enough tiles that splits straddle tile borders
    pad = nb * BLOCK_SIZE - n
    want = _tiles_from_counts(F.pad(dense, (0, pad, 0, pad)).view(nb, BLOCK_SIZE, nb, BLOCK_SIZE).sum((1, 3)))
    got = block_tiles(spec)
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    assert int(got[0].sum()) > 0 and int(got[2].sum()) > 0  # both partial and full tiles occur
    assert allowed_pairs(spec, batch.n_real) == int(dense[: batch.n_real, : batch.n_real].sum())


@pytest.mark.parametrize("layout", ["seq", "sorted"])
def test_per_sample_sdpa_attends_as_the_dense_mask(packs, layout):
    spec = packs[layout].mask_spec()
    T = spec.doc.shape[0]
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, h, T, 16, generator=g) for h in (4, 2, 2))
    parts = sample_masks(spec)
    assert len(parts.parts) == int(spec.doc.max()) + 1  # one SDPA call per sample (padding is its own)
    assert torch.allclose(attend(q, k, v, parts), attend(q, k, v, dense_mask(spec)), atol=1e-5)
