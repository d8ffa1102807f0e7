"""Packs for ``braid train`` built ahead of the step, in DataLoader worker processes on a GPU.

Packing (decoding and resizing every image of a 16k-token pack) takes longer on the host than the GPU
takes for the step, so on one thread it sets the pace. ``PackSource`` walks the one global stream of
packs, keeps this rank's (``world`` ranks take turns), and for each builds the ``Batch``, the block mask's
tiles (``model.attention.block_tiles``) and the allowed-pair count for the FLOP figure. With N workers,
worker w packs every N-th of this rank's packs; every worker walks the same plans, so the order and the
positions are those of one process, and resuming from a position gives the same packs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from model.attention import allowed_pairs, block_tiles
from model.data import DataError, pack


@dataclass
class Item:
    """One pack of this rank and what the step needs beside it."""

    batch: object = None
    tiles: tuple | None = None  # block-mask tiles, or None when the mask is built on the device
    pairs: int = 0  # allowed query-key pairs among the real tokens
    position: tuple = (0, 0)  # the stream position after this pack
    skips: list = field(default_factory=list)  # samples skipped since the last item of this worker
    error: str = ""  # a DataError's message (the stream has nothing usable)


class PackSource(IterableDataset):
    def __init__(self, stream, tok, mcfg, position: tuple, rank: int, world: int, tiles: bool):
        super().__init__()
        self.stream, self.tok, self.mcfg = stream, tok, mcfg
        self.position, self.rank, self.world, self.tiles = tuple(position), rank, world, tiles

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        packs = self.stream.packs(*self.position)
        seen = 0
        i = 0
        while True:
            mine = None
            try:
                for r in range(self.world):  # every rank walks the same stream and keeps its own pack
                    plans, pos = next(packs)
                    if r == self.rank:
                        mine = plans
            except DataError as e:
                yield Item(error=str(e), skips=self.stream.skips[seen:])
                return
            if i % nw == wid:
                batch = pack(mine, self.tok, self.mcfg, sort_experts=True)
                spec = batch.mask_spec()
                tiles = block_tiles(spec) if self.tiles else None
                yield Item(batch, tiles, allowed_pairs(spec, batch.n_real), pos, self.stream.skips[seen:])
                seen = len(self.stream.skips)
            i += 1


def pack_items(source: PackSource, workers: int):
    """An endless iterator of ``Item``s: in ``workers`` processes, or in this one when 0."""
    if workers <= 0:
        return iter(source)
    loader = DataLoader(source, batch_size=None, num_workers=workers, prefetch_factor=4, collate_fn=_keep,
                        multiprocessing_context="fork", worker_init_fn=_one_thread)
    return iter(loader)


def _keep(item):
    return item


def _one_thread(_):
    torch.set_num_threads(1)
