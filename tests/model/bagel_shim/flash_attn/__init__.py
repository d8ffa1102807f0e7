"""Stand-in for flash_attn when BAGEL's reference code runs on CPU in tests: ``flash_attn_varlen_func`` as
PyTorch attention per sequence, in float32 on the (already rounded) inputs; causal masks aligned to the end
of the keys, as flash-attention aligns them when queries are fewer than keys (decoding with a cache)."""

import itertools

import torch
import torch.nn.functional as F


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None, max_seqlen_k=None, causal=False,
                           **kwargs):
    outs = []
    for (qa, qb), (ka, kb) in zip(itertools.pairwise(cu_seqlens_q.tolist()), itertools.pairwise(cu_seqlens_k.tolist())):
        qs = q[qa:qb].float().transpose(0, 1)[None]
        ks, vs = (t[ka:kb].float().transpose(0, 1)[None] for t in (k, v))
        if ks.shape[1] != qs.shape[1]:
            ks = ks.repeat_interleave(qs.shape[1] // ks.shape[1], dim=1)
            vs = vs.repeat_interleave(qs.shape[1] // vs.shape[1], dim=1)
        mask = None
        if causal:
            lq, lk = qb - qa, kb - ka
            mask = torch.arange(lk)[None, :] <= torch.arange(lq)[:, None] + (lk - lq)
        outs.append(F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask)[0].transpose(0, 1))
    return torch.cat(outs)
