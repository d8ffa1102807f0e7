"""The training objective on a packed batch: next-token CE on loss-bearing text plus rectified-flow velocity
MSE on noised latents (logit-normal timesteps with shift), weighted ``ce_weight : mse_weight``.

Per noised image: t = shift(sigmoid(n)), n ~ N(0, 1); x_t = (1 - t) x0 + t eps; target v = eps - x0.
Clean latents enter with t = 0. Per-token losses are returned too, for scoring."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.mot import latent_pos_ids, patchify, shift_timesteps


def latent_inputs(model, ae, batch, generator: torch.Generator | None, t_fixed: float | None = None):
    """(x_t (n, patch_dim), t (n,), pos ids (n,), velocity targets of noised tokens (m, patch_dim),
    positions of noised tokens among the latent tokens (m,))."""
    cfg = model.cfg
    p = cfg.latent_patch
    dev = batch.input_ids.device
    with torch.no_grad():
        latents = [ae.encode(img.unsqueeze(0)).squeeze(0).float() for img in batch.gen_images]
    xs, ts, pos, targets, noised_rows = [], [], [], [], []
    row = 0
    for img_i, noised in batch.latent_entries:
        z = latents[img_i]
        x0 = patchify(z, p)  # (n, C*p*p)
        n = x0.shape[0]
        if noised:
            if t_fixed is None:
                t = torch.sigmoid(torch.randn((), generator=generator, device=dev))
                t = shift_timesteps(t, cfg.timestep_shift)
            else:
                t = torch.tensor(float(t_fixed), device=dev)
            eps = torch.randn(x0.shape, generator=generator, device=dev)
            xs.append((1 - t) * x0 + t * eps)
            ts.append(t.expand(n))
            targets.append(eps - x0)
            noised_rows.append(torch.arange(row, row + n, device=dev))
        else:
            xs.append(x0)
            ts.append(torch.zeros(n, device=dev))
        pos.append(latent_pos_ids(z.shape[1] // p, z.shape[2] // p, cfg.max_latent_side, device=dev))
        row += n
    if not xs:
        empty = torch.zeros(0, cfg.latent_patch_dim, device=dev)
        idx = torch.zeros(0, dtype=torch.long, device=dev)
        return empty, torch.zeros(0, device=dev), idx, empty, idx
    cat = torch.cat
    return (cat(xs), cat(ts), cat(pos), cat(targets) if targets else xs[0][:0],
            cat(noised_rows) if noised_rows else torch.zeros(0, dtype=torch.long, device=dev))


def compute_losses(model, ae, batch, attn_mask, attend, generator: torch.Generator | None = None,
                   t_fixed: float | None = None) -> dict:
    """Forward one packed batch. Returns loss (weighted sum), ce, mse (means), per-token ce_tok (at
    ``batch.ce_idx``) and mse_tok (at the noised latent tokens, in order)."""
    cfg = model.cfg
    x_t, t, pos, v_target, noised_rows = latent_inputs(model, ae, batch, generator, t_fixed)
    h = model.embed(batch.input_ids, batch.kind, batch.vit_pixels, x_t, t, pos, batch.vit_idx, batch.latent_idx)
    hidden, _ = model.forward_hidden(h, batch.position_ids, *batch.routes(), attn_mask, attend)
    zero = hidden.sum() * 0.0  # keeps a graph (and every rank's backward) when a batch lacks one loss
    if batch.ce_idx.numel():
        logits = model.logits(hidden.index_select(0, batch.ce_idx)).float()
        ce_tok = F.cross_entropy(logits, batch.ce_targets, reduction="none")
        ce = ce_tok.mean()
    else:
        ce_tok, ce = hidden.new_zeros(0).float(), zero.float()
    if noised_rows.numel():
        rows = batch.latent_idx.index_select(0, noised_rows)
        pred = model.velocity(hidden.index_select(0, rows)).float()
        mse_tok = (pred - v_target).pow(2).mean(-1)
        mse = mse_tok.mean()
    else:
        mse_tok, mse = hidden.new_zeros(0).float(), zero.float()
    loss = cfg.ce_weight * ce + cfg.mse_weight * mse
    return {"loss": loss, "ce": ce, "mse": mse, "ce_tok": ce_tok, "mse_tok": mse_tok}
