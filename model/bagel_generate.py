"""Greedy text generation with a BAGEL model, as BAGEL's ``generate_text`` does it: after a context, start from
``<|im_start|>`` at the next position and take the most likely token until ``<|im_end|>`` or ``max_length``.

Each step recomputes the whole causal sequence (no cache): exact and simple, meant for scoring-time captions and
tests, not for fast decoding.
"""

from __future__ import annotations

import torch

from model.bagel_lm import sample_mask


@torch.no_grad()
def greedy_text(model, context_ids: list[int], bos: int, eos: int, max_length: int) -> list[int]:
    """The tokens BAGEL's greedy decoding yields (the start token first, ``<|im_end|>`` not included) after a
    text context packed as ``<|im_start|> context <|im_end|>``."""
    lm = model.language_model
    seq = [bos, *context_ids, eos]
    out, cur = [], bos
    for _ in range(max_length):
        out.append(cur)
        seq.append(cur)
        ids = torch.tensor(seq, device=lm.lm_head.weight.device)
        x = lm.model.embed_tokens(ids)
        gen = torch.zeros(len(seq), dtype=torch.bool, device=ids.device)
        h = lm(x, torch.arange(len(seq), device=ids.device), gen, [len(seq)],
               [sample_mask([len(seq)], ["causal"], ids.device)])
        cur = int(lm.lm_head(h[-1]).argmax())
        if cur == eos:
            break
    return out
