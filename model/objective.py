"""The training objective on a packed batch: next-token CE on loss-bearing text plus rectified-flow velocity
MSE on noised latents (logit-normal timesteps with shift), weighted ``ce_weight : mse_weight`` (train config).

Per noised image: t = shift(sigmoid(n)), n ~ N(0, 1); x_t = (1 - t) x0 + t eps; target v = eps - x0.
Clean latents enter with t = 0. Per-token losses are returned too, for scoring."""

from __future__ import annotations

import torch

from model.mot import Inputs, latent_pos_ids, patchify, shift_timesteps

LOSS_WEIGHTS = (0.25, 1.0)  # CE : MSE, BAGEL's; ``braid train`` takes them from its train config


def latent_inputs(cfg, ae, batch, generator: torch.Generator | None, t_fixed: float | None = None):
    """(x_t (n, patch_dim), t (n,), pos ids (n,), velocity targets of noised tokens (m, patch_dim),
    positions of noised tokens among the latent tokens (m,))."""
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


def model_inputs(cfg, ae, batch, attn_mask, attend, generator: torch.Generator | None = None,
                 t_fixed: float | None = None) -> Inputs:
    """The forward's inputs for one packed batch, with noised latents and both loss targets."""
    x_t, t, pos, v_target, noised_rows = latent_inputs(cfg, ae, batch, generator, t_fixed)
    return Inputs(position_ids=batch.position_ids, routes=batch.routes(), attn_mask=attn_mask, attend=attend,
                  input_ids=batch.input_ids, vit_pixels=batch.vit_pixels, vit_idx=batch.vit_idx, latent_x=x_t,
                  latent_t=t, latent_pos=pos, latent_idx=batch.latent_idx, ce_idx=batch.ce_idx,
                  ce_targets=batch.ce_targets, mse_rows=noised_rows, v_target=v_target)


def compute_losses(model, ae, batch, attn_mask, attend, generator: torch.Generator | None = None,
                   t_fixed: float | None = None, weights: tuple[float, float] = LOSS_WEIGHTS) -> dict:
    """Forward one packed batch through ``model`` (a MoT, or one wrapped in DistributedDataParallel).
    Returns loss (``weights[0] * ce + weights[1] * mse``), ce, mse (means), per-token ce_tok (at
    ``batch.ce_idx``) and mse_tok (at the noised latent tokens, in order)."""
    cfg = getattr(model, "module", model).cfg
    out = model(model_inputs(cfg, ae, batch, attn_mask, attend, generator, t_fixed))
    loss = weights[0] * out.ce + weights[1] * out.mse
    return {"loss": loss, "ce": out.ce, "mse": out.mse, "ce_tok": out.ce_tok, "mse_tok": out.mse_tok}
