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

from model.score import DEFAULT_TIMESTEPS, SampleScore, _seed, sample_score


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


def score_samples_bagel(bundle: BagelBundle, samples, timesteps=DEFAULT_TIMESTEPS, seed: int = 0) -> list[SampleScore]:
    """Scores of several samples, in order, packed together into forwards of at most ``bundle.max_tokens``
    tokens (each sample still attends only to itself and gets its own seeded noise, so its score is the one it
    gets alone, up to float rounding). Samples are packed (images decoded, transformed and encoded) in a
    background thread, in order, while the forwards run."""
    from concurrent.futures import ThreadPoolExecutor

    out: list = [None] * len(samples)
    group: list[tuple[int, object]] = []
    used = 0
    with ThreadPoolExecutor(1, thread_name_prefix="bagel-pack") as pool:
        packs = [pool.submit(_pack, bundle, sample) for sample in samples]
        for j, (sample, fut) in enumerate(zip(samples, packs)):
            packed = fut.result()
            if isinstance(packed, str):  # an image that does not decode
                out[j] = SampleScore(sample.key, sample.kind, None, note=f"does not load: {packed}")
                continue
            if packed.n_tokens > bundle.max_tokens:
                out[j] = SampleScore(sample.key, sample.kind, None, n_tokens=packed.n_tokens,
                                     note=f"{packed.n_tokens} tokens, over BAGEL's per-sample budget of "
                                          f"{bundle.max_tokens}")
                continue
            if group and used + packed.n_tokens > bundle.max_tokens:
                _score_group(bundle, samples, group, out, timesteps, seed)
                group, used = [], 0
            group.append((j, packed))
            used += packed.n_tokens
    if group:
        _score_group(bundle, samples, group, out, timesteps, seed)
    return out


def _pack(bundle: BagelBundle, sample):
    """The sample's packed sequence, or why it cannot be packed."""
    import torch

    from model.bagel_pack import pack_sample

    try:
        with torch.no_grad():
            return pack_sample(sample, bundle.tok, bundle.cfg, bundle.vae, bundle.transforms)
    except (OSError, ValueError) as e:
        return str(e)


def _merge(packs: list) -> dict:
    """One packed batch of several samples (BAGEL's packing of a batch: sequences side by side)."""
    import torch

    out: dict = {"sequence_length": 0, "sample_lens": [], "split_lens": [], "attn_modes": []}
    cat: dict = {}
    shifted = ("packed_text_indexes", "packed_vit_token_indexes", "packed_vae_token_indexes")
    for p in packs:
        b, off = p.batch, out["sequence_length"]
        for k, v in b.items():
            if k in ("sequence_length", "sample_lens", "split_lens", "attn_modes"):
                continue
            if k in ("padded_latent", "patchified_vae_latent_shapes"):
                cat.setdefault(k, []).extend(v)
            else:
                cat.setdefault(k, []).append(v + off if k in shifted else v)
        out["sequence_length"] += b["sequence_length"]
        out["sample_lens"] += b["sample_lens"]
        out["split_lens"] += b["split_lens"]
        out["attn_modes"] += b["attn_modes"]
    for k, v in cat.items():
        out[k] = v if k in ("padded_latent", "patchified_vae_latent_shapes") else torch.cat(v)
    if "padded_latent" in out:  # the loss masks must cover the whole sequence
        for k in ("mse_loss_indexes",):
            out[k] = torch.cat([p.batch.get(k, torch.zeros(p.batch["sequence_length"], dtype=torch.bool))
                                for p in packs])
    return out


def _score_group(bundle: BagelBundle, samples, group: list, out: list, timesteps, seed: int) -> None:
    import torch

    packs = [p for _, p in group]
    batch = _to(_merge(packs), bundle.device)
    n_lat = [int(p.batch["timesteps"].numel()) if "timesteps" in p.batch else 0 for p in packs]
    noised = batch.get("timesteps")
    ce_tok, mse_sum = None, None
    with torch.no_grad():
        for i, t in enumerate(timesteps):
            if noised is not None:
                batch["timesteps"] = noised * t
                noise = torch.cat([torch.randn(n, bundle.cfg.patch_latent_dim,
                                               generator=torch.Generator().manual_seed(_seed(seed, samples[j].key, i)))
                                   for (j, _), n in zip(group, n_lat)])
                res = bundle.model(batch, noise=noise.to(bundle.device, bundle.dtype))
            else:
                res = bundle.model(batch)
            if ce_tok is None:
                ce_tok = res["ce"].float().cpu()
            if res["mse"] is not None:
                m = res["mse"].float().mean(-1).cpu()
                mse_sum = m if mse_sum is None else mse_sum + m
            if noised is None:
                break
    mse_tok = mse_sum / len(timesteps) if mse_sum is not None else None
    ce_at = mse_at = 0
    for j, p in group:
        n_ce, n_mse = len(p.ce_seg), len(p.mse_seg)
        out[j] = _sample_score(bundle, samples[j], p, ce_tok[ce_at: ce_at + n_ce],
                               mse_tok[mse_at: mse_at + n_mse] if mse_tok is not None else None)
        ce_at, mse_at = ce_at + n_ce, mse_at + n_mse


def _sample_score(bundle: BagelBundle, sample, packed, ce_tok, mse_tok) -> SampleScore:
    """One sample's SampleScore from its per-token CE and MSE (rows in its packed order)."""
    import torch

    loss_of = {i: getattr(s, "loss", True) for i, s in enumerate(sample.segments)}
    return sample_score(sample, ce_tok, torch.tensor(packed.ce_seg, dtype=torch.long), mse_tok,
                        torch.tensor(packed.mse_seg, dtype=torch.long), loss_of, bundle.loss_weights, packed.n_tokens)


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
