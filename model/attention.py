"""The generalised causal mask over a packed sequence, as a dense boolean mask or a FlexAttention block mask.

Each token carries its sample (``doc``), its split (``split``: a run of one modality, numbered across
the pack) and the split's mode: causal (text), full (ViT image, clean latent) or noise (noised latent).
Query q may see key k when both are in the same sample and

    (k <= q  or  k is in q's split and that split is full/noise)  and not (k is noise and k's split != q's)

so text is causal, an image sees itself whole, nothing after a noised image sees its noised tokens,
and packed samples never see each other (BAGEL's ``create_sparse_mask``). "k <= q" compares sequence
order (``order``), so a pack stored in another row order (experts sorted, see ``model.data.pack``) keeps
its mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

CAUSAL, FULL, NOISE = 0, 1, 2  # split modes
BLOCK_SIZE = 128  # FlexAttention tile; packs are padded to a multiple of it


@dataclass
class MaskSpec:
    """Per-token mask inputs, each (T,) on the target device."""

    doc: torch.Tensor  # sample index in the pack; padding has its own
    split: torch.Tensor  # split index, unique across the pack
    mode: torch.Tensor  # CAUSAL / FULL / NOISE of the token's split
    order: torch.Tensor | None = None  # the token's place in sequence order; None: the row index

    def to(self, device) -> MaskSpec:
        order = None if self.order is None else self.order.to(device)
        return MaskSpec(self.doc.to(device), self.split.to(device), self.mode.to(device), order)


def _allowed(spec: MaskSpec, q, k):
    """Mask rule on index tensors q, k (broadcastable); shared by the dense and the block path."""
    same_doc = spec.doc[q] == spec.doc[k]
    same_split = spec.split[q] == spec.split[k]
    mode_k = spec.mode[k]
    inside = same_split & (mode_k != CAUSAL)
    hidden_noise = (mode_k == NOISE) & ~same_split
    earlier = (k <= q) if spec.order is None else (spec.order[k] <= spec.order[q])
    return same_doc & (earlier | inside) & ~hidden_noise


def dense_mask(spec: MaskSpec) -> torch.Tensor:
    """(T, T) bool, True where a query (row) may attend a key (column)."""
    n = spec.doc.shape[0]
    idx = torch.arange(n, device=spec.doc.device)
    return _allowed(spec, idx[:, None], idx[None, :])


def _tiles_from_counts(count: torch.Tensor) -> tuple:
    """Allowed pairs per (query tile, key tile) -> (partial count, partial ids, full count, full ids), int32."""
    full = count == BLOCK_SIZE * BLOCK_SIZE  # the kernel skips mask_mod on these
    partial = (count > 0) & ~full

    def blocks(m):  # per query tile: how many key tiles, and which (ascending, listed first)
        return m.sum(-1, dtype=torch.int32)[None, None], m.logical_not().int().argsort(dim=-1, stable=True).int()[None, None]

    return (*blocks(partial), *blocks(full))


def _runs(spec: MaskSpec, n: int):
    """Maximal runs of stored rows [0, n) in one split: (start, end, doc, mode, the split's first sequence index,
    split id) per run, numpy arrays."""
    import numpy as np

    split = spec.split[:n].cpu().numpy()
    doc, mode = spec.doc[:n].cpu().numpy(), spec.mode[:n].cpu().numpy()
    order = np.arange(n) if spec.order is None else spec.order[:n].cpu().numpy()
    starts = np.flatnonzero(np.r_[True, split[1:] != split[:-1]])
    ends = np.r_[starts[1:], n]
    first = np.full(int(split.max()) + 1 if n else 0, np.iinfo(np.int64).max)
    np.minimum.at(first, split, order)
    return starts, ends, doc[starts], mode[starts], first[split[starts]], split[starts]


def _run_pairs(spec: MaskSpec, n: int):
    """The mask over rows [0, n) as run pairs: full rectangles (R, R) bool and the causal runs (one triangle each).

    Rows of a split form runs in stored order (one per expert part); a query run sees a key run of another
    split of its sample whole when that split comes earlier in sequence order and is not noise, and its
    own split whole (full / noise) or causally (text, always one run of consecutive rows)."""
    import numpy as np

    s0, s1, doc, mode, first, sid = _runs(spec, n)
    same_doc = doc[:, None] == doc[None, :]
    same_split = sid[:, None] == sid[None, :]
    earlier = (first[None, :] < first[:, None]) & (mode[None, :] != NOISE)
    rect = same_doc & ((same_split & (mode[None, :] != CAUSAL)) | (~same_split & earlier))
    causal = mode == CAUSAL
    if causal.any() and np.bincount(sid[causal]).max() > 1:
        raise ValueError("a causal split spans more than one run of rows")
    return s0, s1, rect, causal


def block_tiles(spec: MaskSpec) -> tuple:
    """The block mask's tile lists computed on the host from the split structure, without the (T, T) mask:
    allowed pairs per tile are sums of rectangle overlaps (one small matrix product) plus the causal
    triangles. Same result as ``block_mask``'s dense classification; a data loader builds these on CPU."""
    import numpy as np

    n = spec.doc.shape[0]
    nb = -(-n // BLOCK_SIZE)
    s0, s1, rect, causal = _run_pairs(spec, n)
    lo = np.arange(nb) * BLOCK_SIZE
    ov = np.clip(np.minimum(s1[:, None], lo[None, :] + BLOCK_SIZE) - np.maximum(s0[:, None], lo[None, :]), 0, None)
    ov = ov.astype(np.float64)  # (runs, tiles): rows of each run inside each tile
    count = ov.T @ (rect.astype(np.float64) @ ov)
    tri = ov[causal]
    count += np.tril(tri.T @ tri, -1) + np.diag((tri * (tri + 1) / 2).sum(0))
    return _tiles_from_counts(torch.from_numpy(np.rint(count).astype(np.int64)))


def allowed_pairs(spec: MaskSpec, n: int | None = None) -> int:
    """Query-key pairs the mask allows among rows [0, n) (the real tokens), from the split structure."""
    import numpy as np

    n = spec.doc.shape[0] if n is None else n
    s0, s1, rect, causal = _run_pairs(spec, n)
    ln = (s1 - s0).astype(np.int64)
    return int(ln @ rect.astype(np.int64) @ ln + (ln[causal] * (ln[causal] + 1) // 2).sum())


def block_mask(spec: MaskSpec, tiles: tuple | None = None):
    """A FlexAttention BlockMask for the same rule (``BLOCK_SIZE`` tiles; heads broadcast).

    ``tiles`` from ``block_tiles`` (built on the host, e.g. in the data loader) are moved to the spec's
    device; without them the tiles are classified on the device from the dense mask (one pass over
    (T, T) booleans, about 5 ms at 16k tokens on an H200)."""
    from torch.nn.attention.flex_attention import BlockMask

    def mask_mod(b, h, q, k):
        return _allowed(spec, q, k)

    n = spec.doc.shape[0]
    if tiles is None:
        nb = -(-n // BLOCK_SIZE)
        dense = F.pad(dense_mask(spec), (0, nb * BLOCK_SIZE - n, 0, nb * BLOCK_SIZE - n))
        tiles = _tiles_from_counts(dense.view(nb, BLOCK_SIZE, nb, BLOCK_SIZE).sum((1, 3)))
    else:
        dev = spec.doc.device
        tiles = tuple(t.to(dev, non_blocking=True) for t in tiles)
    return BlockMask.from_kv_blocks(*tiles, BLOCK_SIZE=BLOCK_SIZE, mask_mod=mask_mod, seq_lengths=(n, n))


@dataclass
class SampleMasks:
    """The dense path as BAGEL's ``forward_train`` runs it: each sample of the pack attends within itself
    under its own (n_i, n_i) mask. ``rows`` are the sample's stored rows (a slice when contiguous)."""

    parts: list  # (rows, (n_i, n_i) bool mask)


def sample_masks(spec: MaskSpec) -> SampleMasks:
    parts = []
    for d in torch.unique(spec.doc).tolist():
        rows = (spec.doc == d).nonzero().squeeze(1)
        sub = MaskSpec(spec.doc[rows], spec.split[rows], spec.mode[rows],
                       rows if spec.order is None else spec.order[rows])
        r0, r1 = int(rows[0]), int(rows[-1]) + 1
        parts.append((slice(r0, r1) if r1 - r0 == rows.numel() else rows, dense_mask(sub)))
    return SampleMasks(parts)


_compiled_flex = None
FLEX_KERNEL_OPTIONS: dict = {}  # passed to flex_attention as kernel_options (tile sizes, warps, stages)


def _flex(q, k, v, mask):
    from torch.nn.attention.flex_attention import flex_attention

    global _compiled_flex
    if q.device.type != "cuda" or torch.compiler.is_compiling():  # CPU: eager reference; inside compile: inlined
        return flex_attention(q, k, v, block_mask=mask, enable_gqa=True, kernel_options=FLEX_KERNEL_OPTIONS or None)
    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex(q, k, v, block_mask=mask, enable_gqa=True, kernel_options=FLEX_KERNEL_OPTIONS or None)


def attend(q, k, v, mask):
    """q (1, H, Tq, Dh), k/v (1, Hkv, Tk, Dh) -> (1, H, Tq, Dh) under a dense bool (Tq, Tk) mask, a block
    mask, or per-sample masks (``SampleMasks``: one SDPA call per sample)."""
    if isinstance(mask, SampleMasks):
        outs, rows_all = [], []
        for rows, m in mask.parts:
            part = [t[:, :, rows] if isinstance(rows, slice) else t.index_select(2, rows) for t in (q, k, v)]
            outs.append(attend(*part, m))
            rows_all.append(rows)
        if all(isinstance(r, slice) for r in rows_all) and [r.start for r in rows_all] == sorted(
                r.start for r in rows_all):
            return torch.cat(outs, dim=2)
        idx = torch.cat([torch.arange(r.start, r.stop, device=q.device) if isinstance(r, slice) else r
                         for r in rows_all])
        return torch.cat(outs, dim=2).index_select(2, torch.argsort(idx))
    if mask is not None and not isinstance(mask, torch.Tensor):
        return _flex(q, k, v, mask)
    rep = q.shape[1] // k.shape[1]
    if rep > 1:  # expand heads so SDPA keeps its memory-efficient kernel, which takes an arbitrary mask
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def build_mask(spec: MaskSpec, kind: str, tiles: tuple | None = None):
    """``kind``: "dense", "flex", "sample" (per-sample SDPA) or "auto" (flex on CUDA, dense elsewhere);
    ``tiles``: the block mask's tiles built on the host (``block_tiles``)."""
    if kind == "auto":
        kind = "flex" if spec.doc.device.type == "cuda" else "dense"
    if kind == "sample":
        return sample_masks(spec)
    return block_mask(spec, tiles) if kind == "flex" else dense_mask(spec)
