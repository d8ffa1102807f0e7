"""Stand-in for flash_attn when the BAGEL benchmark runs BAGEL's reference code without the flash-attn package:
``flash_attn_varlen_func`` as PyTorch SDPA per sequence on the device of its inputs and in their dtype (flash
attention's own precision: bf16 inputs, float32 accumulation), grouped-query heads repeated, causal masks aligned
to the end of the keys as flash attention aligns them when queries are fewer than keys."""

import itertools

import torch
import torch.nn.functional as F


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None, max_seqlen_k=None, causal=False,
                           softmax_scale=None, **kwargs):
    outs = []
    for (qa, qb), (ka, kb) in zip(itertools.pairwise(cu_seqlens_q.tolist()), itertools.pairwise(cu_seqlens_k.tolist())):
        qs = q[qa:qb].transpose(0, 1)[None]
        ks, vs = (t[ka:kb].transpose(0, 1)[None] for t in (k, v))
        if ks.shape[1] != qs.shape[1]:
            ks = ks.repeat_interleave(qs.shape[1] // ks.shape[1], dim=1)
            vs = vs.repeat_interleave(qs.shape[1] // vs.shape[1], dim=1)
        mask = None
        if causal:
            lq, lk = qb - qa, kb - ka
            mask = (torch.arange(lk, device=q.device)[None, :]
                    <= torch.arange(lq, device=q.device)[:, None] + (lk - lq))
        o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, scale=softmax_scale)
        outs.append(o[0].transpose(0, 1))
    return torch.cat(outs)
