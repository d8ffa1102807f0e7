"""Stand-in for flash_attn when BAGEL's reference code runs on CPU in tests: ``flash_attn_varlen_func`` as
PyTorch attention per sequence, in float32 on the (already rounded) inputs."""

import itertools

import torch
import torch.nn.functional as F


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None, max_seqlen_k=None, causal=False,
                           **kwargs):
    outs = []
    bounds = cu_seqlens_q.tolist()
    for a, b in itertools.pairwise(bounds):
        qs, ks, vs = (t[a:b].float().transpose(0, 1)[None] for t in (q, k, v))
        if ks.shape[1] != qs.shape[1]:
            ks = ks.repeat_interleave(qs.shape[1] // ks.shape[1], dim=1)
            vs = vs.repeat_interleave(qs.shape[1] // vs.shape[1], dim=1)
        outs.append(F.scaled_dot_product_attention(qs, ks, vs, is_causal=causal)[0].transpose(0, 1))
    return torch.cat(outs)
