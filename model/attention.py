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


def block_mask(spec: MaskSpec):
    """A FlexAttention BlockMask for the same rule (``BLOCK_SIZE`` tiles; heads broadcast).

    Tiles are classified from the dense mask (one pass over (T, T) booleans): at 16k tokens that takes a
    third of ``create_block_mask``'s time, which a packed step pays for every new pack."""
    from torch.nn.attention.flex_attention import BlockMask

    def mask_mod(b, h, q, k):
        return _allowed(spec, q, k)

    n = spec.doc.shape[0]
    nb = -(-n // BLOCK_SIZE)
    dense = F.pad(dense_mask(spec), (0, nb * BLOCK_SIZE - n, 0, nb * BLOCK_SIZE - n))
    count = dense.view(nb, BLOCK_SIZE, nb, BLOCK_SIZE).sum((1, 3))
    full = count == BLOCK_SIZE * BLOCK_SIZE  # the kernel skips mask_mod on these
    partial = (count > 0) & ~full

    def blocks(m):  # per query tile: how many key tiles, and which (ascending, listed first)
        return m.sum(-1, dtype=torch.int32)[None, None], m.logical_not().int().argsort(dim=-1, stable=True).int()[None, None]

    return BlockMask.from_kv_blocks(*blocks(partial), *blocks(full), BLOCK_SIZE=BLOCK_SIZE, mask_mod=mask_mod,
                                    seq_lengths=(n, n))


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
    """q (1, H, Tq, Dh), k/v (1, Hkv, Tk, Dh) -> (1, H, Tq, Dh) under a dense bool (Tq, Tk) or block mask."""
    if mask is not None and not isinstance(mask, torch.Tensor):
        return _flex(q, k, v, mask)
    rep = q.shape[1] // k.shape[1]
    if rep > 1:  # expand heads so SDPA keeps its memory-efficient kernel, which takes an arbitrary mask
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def build_mask(spec: MaskSpec, kind: str):
    """``kind``: "dense", "flex" or "auto" (flex on CUDA, dense elsewhere)."""
    if kind == "auto":
        kind = "flex" if spec.doc.device.type == "cuda" else "dense"
    return block_mask(spec) if kind == "flex" else dense_mask(spec)
