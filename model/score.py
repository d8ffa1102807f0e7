"""Spot-check scores of samples under a trained MoT: how surprising each part of a sample is to the model.

A sample is planned and packed exactly as for training, without condition dropout, and read alone:

- each text segment: mean next-token cross-entropy per token (every text segment is scored, with or
  without its loss flag; the sample score uses only loss-bearing ones, as training does);
- each generation-target image: velocity MSE per latent token, averaged over fixed timesteps with
  fixed noise seeded by (seed, key, timestep), so a score never changes between runs or batchings;
- the sample: ``ce_weight * CE + mse_weight * MSE`` (token-weighted means, the run's train-config weights),
  the training objective.

Scores are comparable within a sample kind (kinds differ in layout and text style); ``rank_scores`` puts
samples on one scale by a robust z-score within their kind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field

DEFAULT_TIMESTEPS = (0.25, 0.5, 0.75)


@dataclass
class SegmentScore:
    seg: int  # index in sample.segments
    kind: str  # "text" (mean CE per token) or "image" (mean velocity MSE)
    value: float
    n_tokens: int
    loss: bool = True  # the segment carries loss in training


@dataclass
class SampleScore:
    key: str
    kind: str
    score: float | None  # None when the sample could not be scored (see ``note``)
    ce: float | None = None
    mse: float | None = None
    n_tokens: int = 0
    segments: list[SegmentScore] = field(default_factory=list)
    z: float = 0.0  # robust z-score within the sample kind (set by ``rank_scores``)
    note: str = ""

    def segment(self, index: int) -> SegmentScore | None:
        return next((s for s in self.segments if s.seg == index), None)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _seed(*parts) -> int:
    return int(hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:15], 16)


def score_sample(bundle, sample, timesteps=DEFAULT_TIMESTEPS, seed: int = 0) -> SampleScore:
    """Score one sample (deterministic); a sample the trainer would skip gets score None and a note."""
    import torch

    from model.attention import MaskSpec, attend, dense_mask
    from model.data import pack, plan_sample
    from model.objective import compute_losses

    model, mcfg = bundle.model, bundle.mcfg
    plan = plan_sample(sample, bundle.tok, mcfg, bundle.dcfg, None)
    if plan.n_tokens > bundle.dcfg.max_tokens:
        return SampleScore(sample.key, sample.kind, None, n_tokens=plan.n_tokens,
                           note=f"{plan.n_tokens} tokens, over the training budget of {bundle.dcfg.max_tokens}")
    if not plan.pieces:
        return SampleScore(sample.key, sample.kind, None, note="nothing to score")
    loss_flags = {}
    for piece in plan.pieces:
        if piece.kind == "text":
            loss_flags[piece.seg] = piece.loss
            piece.loss = True  # score every text segment
    try:
        batch = pack([plan], bundle.tok, mcfg, pad_to=1).to(bundle.device)
    except (OSError, ValueError) as e:  # an image that does not decode
        return SampleScore(sample.key, sample.kind, None, n_tokens=plan.n_tokens, note=f"does not load: {e}")
    mask = dense_mask(MaskSpec(batch.doc, batch.split, batch.mode))
    noised = batch.latent_idx[batch.mode[batch.latent_idx] == 2]  # NOISE rows, in the order of mse_tok
    mse_sum = None
    ce_tok = None
    autocast = torch.autocast(bundle.device.type, dtype=bundle.dtype,
                              enabled=bundle.device.type == "cuda" and bundle.dtype != torch.float32)
    with torch.no_grad(), autocast:
        for i, t in enumerate(timesteps):
            g = torch.Generator(device=bundle.device).manual_seed(_seed(seed, sample.key, i))
            out = compute_losses(model, bundle.ae, batch, mask, attend, g, t_fixed=t, weights=bundle.loss_weights)
            if ce_tok is None:
                ce_tok = out["ce_tok"].float()  # text never sees noised latents: the same at every t
            m = out["mse_tok"].float()
            mse_sum = m if mse_sum is None else mse_sum + m
    mse_tok = mse_sum / len(timesteps) if mse_sum is not None and len(timesteps) else None

    mse_seg = batch.seg.index_select(0, noised) if mse_tok is not None and mse_tok.numel() else None
    return sample_score(sample, ce_tok, batch.seg.index_select(0, batch.ce_idx), mse_tok, mse_seg, loss_flags,
                        bundle.loss_weights, plan.n_tokens)


def sample_score(sample, ce_tok, ce_seg, mse_tok, mse_seg, loss_of: dict, weights, n_tokens: int) -> SampleScore:
    """A sample's SampleScore from its per-token CE and MSE and the segment each token belongs to: the mean per
    segment, CE over the loss-bearing text, MSE over the generation targets, and their weighted sum."""
    import torch

    segs: list[SegmentScore] = []
    for s in sorted(set(ce_seg.tolist())):
        vals = ce_tok[ce_seg == s]
        segs.append(SegmentScore(s, "text", float(vals.mean()), int(vals.numel()), loss_of.get(s, True)))
    if mse_tok is not None and mse_tok.numel():
        for s in sorted(set(mse_seg.tolist())):
            vals = mse_tok[mse_seg == s]
            segs.append(SegmentScore(s, "image", float(vals.mean()), int(vals.numel())))
    segs.sort(key=lambda x: x.seg)

    text_vals = [ce_tok[ce_seg == s.seg] for s in segs if s.kind == "text" and s.loss]
    ce = float(torch.cat(text_vals).mean()) if text_vals else None
    mse = float(mse_tok.mean()) if mse_tok is not None and mse_tok.numel() else None
    if ce is None and mse is None:
        return SampleScore(sample.key, sample.kind, None, None, None, n_tokens, segs,
                           note="no loss-bearing text and no generation target")
    w_ce, w_mse = weights
    return SampleScore(sample.key, sample.kind, w_ce * (ce or 0.0) + w_mse * (mse or 0.0), ce, mse, n_tokens, segs)


def score_samples(bundle, samples, timesteps=DEFAULT_TIMESTEPS, seed: int = 0) -> list[SampleScore]:
    return rank_scores([score_sample(bundle, s, timesteps, seed) for s in samples])


def rank_scores(scores: list[SampleScore]) -> list[SampleScore]:
    """Set each score's z (median/MAD within its kind; 0 when the kind has one sample) and return the
    scored ones worst first, then the unscored."""
    by_kind: dict[str, list[SampleScore]] = {}
    for s in scores:
        if s.score is not None:
            by_kind.setdefault(s.kind, []).append(s)
    for group in by_kind.values():
        vals = sorted(s.score for s in group)
        med = _median(vals)
        mad = _median(sorted(abs(v - med) for v in vals)) * 1.4826
        spread = mad if mad > 1e-12 else (max(vals) - min(vals)) / 2 or 1.0
        for s in group:
            s.z = (s.score - med) / spread if len(group) > 1 else 0.0
    scored = sorted((s for s in scores if s.score is not None), key=lambda s: (-s.z, -s.score))
    return scored + [s for s in scores if s.score is None]


def _median(vals: list[float]) -> float:
    if not vals:
        return math.nan
    n = len(vals)
    return vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2
