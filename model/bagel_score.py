"""Scores of Braid samples under a BAGEL checkpoint: the same ``SampleScore`` as ``model.score`` gives for a
``braid train`` run, computed with BAGEL's own losses on BAGEL's packed layout (``model.bagel_pack``).

Per text segment the mean next-token CE (``<|im_end|>`` included), per generation target the velocity MSE
per latent token (mean over its channels) averaged over fixed timesteps with fixed noise seeded by
(seed, key, timestep index), and the sample score ``0.25 * CE + 1.0 * MSE`` (token-weighted means; BAGEL's
paper weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.score import DEFAULT_TIMESTEPS, SampleScore, SegmentScore, _seed


@dataclass
class BagelBundle:
    model: object
    cfg: object
    tok: object
    vae: object
    transforms: tuple
    device: object
    dtype: object
    weights: str = ""
    loss_weights: tuple[float, float] = (0.25, 1.0)
    max_tokens: int = 16384  # BAGEL's max_num_tokens_per_sample


def load_bagel_bundle(folder: str | Path, device: str | None = None, weights: str = "auto", dtype=None) -> BagelBundle:
    """Model, tokenizer and autoencoder of a BAGEL folder; ValueError (BagelLoadError, BagelVAEError) with one
    sentence when anything is missing or does not match."""
    import torch

    from model.bagel_load import load_bagel
    from model.bagel_pack import BagelTokenizer, transforms_for
    from model.bagel_vae import load_bagel_vae

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = dtype or (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    model, cfg, name = load_bagel(folder, str(dev), dtype, weights)
    tok = BagelTokenizer(folder)
    if tok.vocab_size > cfg.llm.vocab_size:
        raise ValueError(f"{folder}: the tokenizer has {tok.vocab_size} tokens, the model's vocabulary "
                         f"{cfg.llm.vocab_size}")
    vae = load_bagel_vae(Path(folder) / "ae.safetensors", str(dev), dtype) if cfg.visual_gen else None
    if vae is not None and vae.latent_channels != cfg.latent_channels:
        raise ValueError(f"{folder}: ae.safetensors gives {vae.latent_channels} latent channels, the model "
                         f"expects {cfg.latent_channels}")
    return BagelBundle(model, cfg, tok, vae, transforms_for(cfg), dev, dtype, name)


def score_sample_bagel(bundle: BagelBundle, sample, timesteps=DEFAULT_TIMESTEPS, seed: int = 0) -> SampleScore:
    import torch

    from model.bagel_pack import pack_sample

    try:
        with torch.no_grad():
            packed = pack_sample(sample, bundle.tok, bundle.cfg, bundle.vae, bundle.transforms)
    except (OSError, ValueError) as e:  # an image that does not decode
        return SampleScore(sample.key, sample.kind, None, note=f"does not load: {e}")
    if packed.n_tokens > bundle.max_tokens:
        return SampleScore(sample.key, sample.kind, None, n_tokens=packed.n_tokens,
                           note=f"{packed.n_tokens} tokens, over BAGEL's per-sample budget of {bundle.max_tokens}")
    batch = _to(packed.batch, bundle.device)
    noised = batch.get("timesteps")
    ce_tok, mse_sum = None, None
    with torch.no_grad():
        for i, t in enumerate(timesteps):
            if noised is not None:
                batch["timesteps"] = noised * t
                g = torch.Generator().manual_seed(_seed(seed, sample.key, i))
                noise = torch.randn(noised.numel(), bundle.cfg.patch_latent_dim, generator=g)
                out = bundle.model(batch, noise=noise.to(bundle.device, bundle.dtype))
            else:
                out = bundle.model(batch)
            if ce_tok is None:
                ce_tok = out["ce"].float().cpu()
            if out["mse"] is not None:
                m = out["mse"].float().mean(-1).cpu()
                mse_sum = m if mse_sum is None else mse_sum + m
            if noised is None:
                break
    mse_tok = mse_sum / len(timesteps) if mse_sum is not None else None
    segs = []
    ce_seg = torch.tensor(packed.ce_seg, dtype=torch.long)
    loss_of = {i: getattr(s, "loss", True) for i, s in enumerate(sample.segments)}
    for s in sorted(set(packed.ce_seg)):
        vals = ce_tok[ce_seg == s]
        segs.append(SegmentScore(s, "text", float(vals.mean()), int(vals.numel()), loss_of[s]))
    if mse_tok is not None and mse_tok.numel():
        mse_seg = torch.tensor(packed.mse_seg, dtype=torch.long)
        for s in sorted(set(packed.mse_seg)):
            vals = mse_tok[mse_seg == s]
            segs.append(SegmentScore(s, "image", float(vals.mean()), int(vals.numel())))
    segs.sort(key=lambda x: x.seg)
    text_vals = [ce_tok[ce_seg == s.seg] for s in segs if s.kind == "text" and s.loss]
    ce = float(torch.cat(text_vals).mean()) if text_vals else None
    mse = float(mse_tok.mean()) if mse_tok is not None and mse_tok.numel() else None
    if ce is None and mse is None:
        return SampleScore(sample.key, sample.kind, None, None, None, packed.n_tokens, segs,
                           note="no loss-bearing text and no generation target")
    w_ce, w_mse = bundle.loss_weights
    return SampleScore(sample.key, sample.kind, w_ce * (ce or 0.0) + w_mse * (mse or 0.0), ce, mse, packed.n_tokens,
                       segs)


def _to(batch: dict, device) -> dict:
    import torch

    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            out[k] = v.to(device)
        elif k == "padded_latent":
            out[k] = [z.to(device) for z in v]
        else:
            out[k] = v
    return out
