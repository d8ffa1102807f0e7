"""Generation with a BAGEL model as BAGEL's inferencer does it: greedy text after a context (start from
``<|im_start|>`` at the next position and take the most likely token until ``<|im_end|>`` or ``max_length``),
decoded over a static KV cache (``model.decode``), and the text-to-image sampler with BAGEL's guidance.
"""

from __future__ import annotations

import torch

from model.bagel_lm import sample_mask
from model.decode import StaticDecoder, capacity_for


@torch.no_grad()
def greedy_after(model, embeds, positions, mask, next_pos: int, bos: int, eos: int, max_length: int,
                 graphs: bool | None = None) -> list[int]:
    """The tokens BAGEL's greedy decoding yields (``bos`` first, ``eos`` not included) after a context given as
    ``embeds`` (T, D) at RoPE ``positions`` (T,) under ``mask`` (T, T) bool, generation starting at ``next_pos``
    (``graphs``: decode steps as CUDA graphs; None: on the GPU)."""
    dec = StaticDecoder(model, capacity_for(embeds.shape[0] + max_length), graphs=graphs)
    dec.prefill(embeds, positions, mask)
    return dec.greedy(bos, next_pos, eos, max_length)


@torch.no_grad()
def greedy_text(model, context_ids: list[int], bos: int, eos: int, max_length: int) -> list[int]:
    """``greedy_after`` a text context packed as ``<|im_start|> context <|im_end|>``."""
    lm = model.language_model
    dev = lm.lm_head.weight.device
    ids = torch.tensor([bos, *context_ids, eos], device=dev)
    n = ids.numel()
    return greedy_after(model, lm.model.embed_tokens(ids), torch.arange(n, device=dev),
                        sample_mask([n], ["causal"], dev), n, bos, eos, max_length)


def _velocity(model, context_ids, x, t: float, h: int, w: int, tokens: dict):
    """Velocity of latent tokens ``x`` at time ``t`` after a text context (None: no context), recomputed whole."""
    lm = model.language_model
    dev = x.device
    seq_ids, pos, modes, splits = [], [], [], []
    if context_ids is not None:
        seq_ids = [tokens["bos"], *context_ids, tokens["eos"]]
        pos = list(range(len(seq_ids)))
        splits, modes = [len(seq_ids)], ["causal"]
    rope, start, n = len(seq_ids), len(seq_ids), h * w
    length = start + n + 2
    emb = lm.model.embed_tokens
    seq = emb.weight.new_zeros((length, lm.cfg.hidden_size))
    text_idx = [*range(start), start, start + n + 1]
    seq[torch.tensor(text_idx, device=dev)] = emb(torch.tensor([*seq_ids, tokens["vision_start"], tokens["vision_end"]],
                                                            device=dev))
    from model.bagel_vit import position_ids

    ts = torch.full((n,), t, device=dev, dtype=torch.float32)
    lat = model.embed_latent(x.to(seq.dtype), ts, position_ids(h, w, 1, model.cfg.max_latent_size).to(dev))
    seq[start + 1: start + 1 + n] = lat.to(seq.dtype)
    gen = torch.zeros(length, dtype=torch.bool, device=dev)
    gen[start + 1: start + 1 + n] = True
    positions = torch.tensor([*pos, *([rope] * (n + 2))], device=dev)
    mask = sample_mask([*splits, n + 2], [*modes, "noise"], dev)
    hidden = lm(seq, positions, gen, [length], [mask])
    return model.llm2vae(hidden[start + 1: start + 1 + n])


@torch.no_grad()
def sample_latent_tokens(model, context_ids: list[int], noise, h: int, w: int, tokens: dict, steps: int = 50,
                         timestep_shift: float = 3.0, cfg_text_scale: float = 4.0, cfg_interval=(0.4, 1.0),
                         cfg_renorm_min: float = 0.0):
    """BAGEL's image sampler for a text context: Euler steps from ``noise`` (h * w latent tokens) over BAGEL's
    shifted schedule, with text classifier-free guidance (the unconditional branch sees no context) inside
    ``cfg_interval`` and BAGEL's global renormalisation of the guided velocity. Returns the latent tokens."""
    grid = torch.linspace(1, 0, steps, device=noise.device)
    grid = timestep_shift * grid / (1 + (timestep_shift - 1) * grid)
    dts = grid[:-1] - grid[1:]
    x = noise
    for i, t in enumerate(grid[:-1].tolist()):
        v = _velocity(model, context_ids, x, t, h, w, tokens)
        if cfg_text_scale > 1.0 and cfg_interval[0] < t <= cfg_interval[1]:
            v_unc = _velocity(model, None, x, t, h, w, tokens)
            guided = v_unc + cfg_text_scale * (v - v_unc)
            v = guided * (torch.norm(v) / (torch.norm(guided) + 1e-8)).clamp(min=cfg_renorm_min, max=1.0)
        x = x - v.to(x.dtype) * dts[i]
    return x
