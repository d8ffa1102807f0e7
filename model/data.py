"""Braid shards -> BAGEL's sequence plan -> packed batches.

A sample becomes splits, in segment order (each split gets one RoPE position if it is an image, one
per token if it is text):

- text: ``<|im_start|> tokens <|im_end|>``, causal; next-token loss inside it when the segment says so;
- understanding image: ``<|vision_start|> ViT tokens <|vision_end|>``, full attention;
- generation target: the noised latent split (velocity loss; nothing later sees it), then, when anything
  follows, its clean latent split (same position, t = 0) and its ViT split, for what comes after.

In samples with a generation target, conditions are dropped at random for classifier-free guidance:
text without loss (p=``text_dropout``), ViT splits (``vit_dropout``) and clean latents (``clean_dropout``).
Samples are packed greedily into ``max_tokens``; a pack's position (epoch, next sample) lets a run resume
on exactly the batch it would have seen next. Shards are read through ``schemas.read_samples`` only.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.attention import BLOCK_SIZE, CAUSAL, FULL, NOISE, MaskSpec
from schemas.config import ConfigError

log = logging.getLogger(__name__)

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>")
TEXT, VIT, LATENT = 0, 1, 2  # token kinds (as model.mot)


class DataError(ConfigError):
    """The shards cannot feed training (none readable, none usable); one sentence."""


@dataclass(frozen=True)
class DataConfig:
    max_tokens: int = 16384  # token budget of one packed sequence (padded up to a multiple of 128)
    text_dropout: float = 0.1  # BAGEL paper: text 0.1, ViT 0.5, clean latent 0.1
    vit_dropout: float = 0.5
    clean_dropout: float = 0.1
    shuffle_shards: bool = True
    eval_fraction: float = 0.1  # with a single shard: share of samples (by key hash) held out for eval


# ------------------------------------------------------------------------------------------ tokenizer


class TextTokenizer:
    """A ``tokenizers`` tokenizer with BAGEL's four special tokens (added when missing)."""

    def __init__(self, tok):
        tok.add_special_tokens([s for s in SPECIALS if tok.token_to_id(s) is None])
        self.tok = tok
        self.pad, self.bos, self.eos, self.vision_start, self.vision_end = (tok.token_to_id(s) for s in SPECIALS)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)

    def save(self, folder: str | Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.tok.save(str(Path(folder) / "tokenizer.json"))

    @classmethod
    def load(cls, folder: str | Path) -> TextTokenizer:
        from tokenizers import Tokenizer

        path = Path(folder) / "tokenizer.json"
        if not path.is_file():
            raise DataError(f"{folder}: no tokenizer.json in the tokenizer folder")
        return cls(Tokenizer.from_file(str(path)))

    @classmethod
    def fit(cls, texts, vocab_size: int) -> TextTokenizer:
        """A byte-level BPE fitted on the given texts (any text still encodes: the byte alphabet is in)."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS), show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(texts, trainer)
        return cls(tok)


# --------------------------------------------------------------------------------------------- images


def gen_size(width: int, height: int, max_side: int, unit: int) -> tuple[int, int]:
    """(w, h) of a generation image: fitted into max_side, sides multiples of ``unit`` (= 2 * downsample)."""
    scale = min(1.0, max_side / max(width, height))
    w = min(max_side, max(unit, round(width * scale / unit) * unit))
    h = min(max_side, max(unit, round(height * scale / unit) * unit))
    return w, h


def load_pixels(data: bytes, size: tuple[int, int]):
    """Encoded image -> float tensor (3, h, w) in [-1, 1], resized to ``size`` = (w, h)."""
    import torch
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB").resize(size, Image.BICUBIC)
        arr = np.asarray(im, dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1) / 127.5 - 1.0


# ----------------------------------------------------------------------------------------------- plan


@dataclass
class Piece:
    """One split of a plan: text ids, or an image reference (decoded only when the pack is built)."""

    kind: str  # "text" | "vit" | "latent"
    seg: int  # index of the source segment in the sample
    ids: list[int] = field(default_factory=list)
    loss: bool = False
    image: bytes = b""
    size: tuple[int, int] = (0, 0)  # (w, h) of the pixels the piece needs
    noised: bool = False
    same_pos: bool = False  # a clean latent reuses its noised twin's position

    def n_tokens(self, grid: int, unit: int) -> int:
        if self.kind == "text":
            return len(self.ids)
        if self.kind == "vit":
            return grid * grid + 2
        return (self.size[0] // unit) * (self.size[1] // unit) + 2


@dataclass
class Plan:
    key: str
    kind: str
    pieces: list[Piece]
    n_tokens: int


def plan_sample(sample, tok: TextTokenizer, mcfg, dcfg: DataConfig, rng: np.random.Generator | None) -> Plan:
    """The split plan of one sample; ``rng`` None means no condition dropout (evaluation, scoring)."""
    from schemas import ImageSegment

    grid, unit = mcfg.vit_grid, mcfg.latent_downsample * mcfg.latent_patch
    has_gen = any(isinstance(s, ImageSegment) and s.generation for s in sample.segments)

    def drop(p: float) -> bool:
        return has_gen and rng is not None and rng.random() < p

    pieces: list[Piece] = []
    last = len(sample.segments) - 1
    for i, seg in enumerate(sample.segments):
        if isinstance(seg, ImageSegment):
            vit = Piece("vit", i, image=seg.data, size=(mcfg.vit_image_size, mcfg.vit_image_size))
            if seg.generation:
                size = gen_size(seg.width, seg.height, mcfg.gen_max_side, unit)
                pieces.append(Piece("latent", i, image=seg.data, size=size, noised=True, loss=True))
                if i < last:
                    if not drop(dcfg.clean_dropout):
                        pieces.append(Piece("latent", i, image=seg.data, size=size, same_pos=True))
                    if not drop(dcfg.vit_dropout):
                        pieces.append(vit)
            elif not drop(dcfg.vit_dropout):
                pieces.append(vit)
        else:
            if not seg.loss and drop(dcfg.text_dropout):
                continue
            pieces.append(Piece("text", i, ids=[tok.bos, *tok.encode(seg.text), tok.eos], loss=seg.loss))
    return Plan(sample.key, sample.kind, pieces, sum(p.n_tokens(grid, unit) for p in pieces))


# ----------------------------------------------------------------------------------------------- pack


@dataclass
class Batch:
    """One packed sequence. Per-token tensors are (T,); index tensors list token positions in order."""

    input_ids: object  # text ids (pad id at image positions)
    kind: object  # TEXT / VIT / LATENT
    position_ids: object  # RoPE positions
    doc: object  # sample index in the pack (padding: its own)
    split: object
    mode: object  # CAUSAL / FULL / NOISE
    seg: object  # source segment index (-1 for padding)
    und_idx: object  # tokens of the understanding expert (TEXT and VIT)
    gen_idx: object  # tokens of the generation expert (LATENT; when sorted, padding too)
    vit_idx: object
    latent_idx: object
    ce_idx: object  # positions whose next token carries loss
    ce_targets: object
    vit_pixels: object  # (N, 3, S, S)
    gen_images: list  # unique generation images, (3, h, w) each
    latent_entries: list  # per latent split in order: (image index, noised)
    keys: list[str]
    n_real: int  # tokens before padding
    order: object = None  # sequence index of each row when the rows are sorted by expert, else None
    n_und: int | None = None  # when sorted: rows [0, n_und) go to the understanding expert, the rest to generation

    def mask_spec(self):
        """The attention mask inputs of this pack (sequence order kept when the rows are sorted)."""
        return MaskSpec(self.doc, self.split, self.mode, self.order)

    def routes(self):
        """(und, gen) rows for ``MoT.forward_hidden``: slices when sorted (routing without gather/scatter)."""
        if self.n_und is None:
            return self.und_idx, self.gen_idx
        return slice(0, self.n_und), slice(self.n_und, None)

    def pin_memory(self) -> Batch:
        """The same pack in page-locked host memory, so ``to(cuda)`` copies without waiting for the GPU."""
        import torch

        pinned = {k: (v.pin_memory() if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        pinned["gen_images"] = [g.pin_memory() for g in self.gen_images]
        return Batch(**pinned)

    def to(self, device) -> Batch:
        import torch

        moved = {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
                 for k, v in self.__dict__.items()}
        moved["gen_images"] = [g.to(device, non_blocking=True) for g in self.gen_images]
        return Batch(**moved)


def pack(plans: list[Plan], tok: TextTokenizer, mcfg, pad_to: int = BLOCK_SIZE, sort_experts: bool = False,
         length: int | None = None) -> Batch:
    """Pack plans into one sequence, decoding images; padded to a multiple of ``pad_to`` (or to ``length``).

    ``sort_experts`` stores the rows as [understanding tokens | latent tokens | padding], each part in
    sequence order, so routing is two slices instead of a gather and a scatter per layer; ``order`` keeps
    each row's sequence index for the mask, and the padding rides with the generation expert (it is its
    own sample and carries no loss). A fixed ``length`` keeps shapes static for torch.compile."""
    import torch

    grid, unit = mcfg.vit_grid, mcfg.latent_downsample * mcfg.latent_patch
    ids, kind, pos, doc, split, mode, seg, targets = [], [], [], [], [], [], [], []
    vit_pixels, gen_images, latent_entries = [], [], []
    n_split = 0

    def add(tid, k, p, d, s, m, sg, tgt=-100):
        ids.append(tid), kind.append(k), pos.append(p), doc.append(d), split.append(s), mode.append(m)
        seg.append(sg), targets.append(tgt)

    for d, plan in enumerate(plans):
        p = 0  # RoPE position inside the sample
        img_pos: dict[int, int] = {}
        img_index: dict[int, int] = {}
        for piece in plan.pieces:
            if piece.kind == "text":
                for j, t in enumerate(piece.ids):
                    tgt = piece.ids[j + 1] if piece.loss and j + 1 < len(piece.ids) else -100
                    add(t, TEXT, p, d, n_split, CAUSAL, piece.seg, tgt)
                    p += 1
            else:
                if piece.same_pos:
                    q = img_pos[piece.seg]
                else:
                    q, p = p, p + 1
                    img_pos[piece.seg] = q
                m = NOISE if piece.noised else FULL
                add(tok.vision_start, TEXT, q, d, n_split, m, piece.seg)
                if piece.kind == "vit":
                    vit_pixels.append(load_pixels(piece.image, piece.size))
                    n = grid * grid
                    tk = VIT
                else:
                    if piece.seg not in img_index:
                        img_index[piece.seg] = len(gen_images)
                        gen_images.append(load_pixels(piece.image, piece.size))
                    latent_entries.append((img_index[piece.seg], piece.noised))
                    n = (piece.size[0] // unit) * (piece.size[1] // unit)
                    tk = LATENT
                for _ in range(n):
                    add(tok.pad, tk, q, d, n_split, m, piece.seg)
                add(tok.vision_end, TEXT, q, d, n_split, m, piece.seg)
            n_split += 1
    n_real = len(ids)
    n_pad = -n_real % pad_to
    if length is not None:
        if length < n_real or length % pad_to:
            raise ValueError(f"pack length {length} must hold {n_real} tokens and be a multiple of {pad_to}")
        n_pad = length - n_real
    for j in range(n_pad):  # padding: one causal split per pad run, its own doc, no loss
        add(tok.pad, TEXT, j, len(plans), n_split, CAUSAL, -1)

    t = lambda x: torch.tensor(x, dtype=torch.long)
    cols = [t(c) for c in (ids, kind, pos, doc, split, mode, seg, targets)]
    order, n_und = None, None
    und_t = cols[1] != LATENT
    if sort_experts:  # stable: each expert's rows keep sequence order (ViT and latent tokens included)
        part = torch.where(und_t, 0, 1)
        part[n_real:] = 2
        order = torch.argsort(part, stable=True)
        cols = [c[order] for c in cols]
        n_und = int((part == 0).sum())
        und_t = torch.arange(len(ids)) < n_und
    ids_t, kind_t, pos_t, doc_t, split_t, mode_t, seg_t, tgt_t = cols
    ce_idx = (tgt_t != -100).nonzero().squeeze(1)
    return Batch(
        input_ids=ids_t, kind=kind_t, position_ids=pos_t, doc=doc_t, split=split_t, mode=mode_t, seg=seg_t,
        und_idx=und_t.nonzero().squeeze(1), gen_idx=(~und_t).nonzero().squeeze(1),
        vit_idx=(kind_t == VIT).nonzero().squeeze(1), latent_idx=(kind_t == LATENT).nonzero().squeeze(1),
        ce_idx=ce_idx, ce_targets=tgt_t[ce_idx], order=order, n_und=n_und,
        vit_pixels=torch.stack(vit_pixels) if vit_pixels else torch.zeros(0, 3, mcfg.vit_image_size,
                                                                          mcfg.vit_image_size),
        gen_images=gen_images, latent_entries=latent_entries, keys=[pl.key for pl in plans], n_real=n_real)


# --------------------------------------------------------------------------------------------- stream


def held_out(key: str, fraction: float) -> bool:
    """Deterministic eval split of a single shard, by key hash."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


class ShardStream:
    """Packed plans over shards, epoch after epoch, from a resumable position (epoch, next sample).

    Unreadable shards and unusable samples are recorded in ``skips`` ({shard, key, reason}) and passed."""

    def __init__(self, shards: list[str], tok: TextTokenizer, mcfg, dcfg: DataConfig, seed: int = 0,
                 keep=None, dropout: bool = True):
        self.shards, self.tok, self.mcfg, self.dcfg, self.seed = [str(s) for s in shards], tok, mcfg, dcfg, seed
        self.keep = keep or (lambda key: True)
        self.dropout = dropout
        self.skips: list[dict] = []
        self._skipped_keys: set[tuple[str, str]] = set()

    def _skip(self, shard: str, key: str, reason: str) -> None:
        if (shard, key) not in self._skipped_keys:  # each problem once, not once per epoch
            self._skipped_keys.add((shard, key))
            self.skips.append({"shard": shard, "key": key, "reason": reason})
            log.warning("skipped %s %s: %s", shard, key, reason)

    def _samples(self, epoch: int) -> Iterator[tuple[str, object]]:
        from schemas import SampleError, ShardError, read_samples

        order = list(range(len(self.shards)))
        if self.dcfg.shuffle_shards:
            order = list(np.random.default_rng([self.seed, epoch]).permutation(len(self.shards)))
        for si in order:
            shard = self.shards[si]
            n = 0
            try:
                for sample in read_samples(shard):
                    n += 1
                    yield shard, sample
            except (ShardError, SampleError, OSError) as e:
                self._skip(shard, f"#{n}", f"rest of shard unreadable after {n} samples: {e}")

    def plans(self, epoch: int, start: int = 0) -> Iterator[tuple[int, Plan]]:
        """(index in epoch, plan) of usable samples from ``start``; indices count every sample read."""
        budget = self.dcfg.max_tokens
        for i, (shard, sample) in enumerate(self._samples(epoch)):
            if i < start or not self.keep(sample.key):
                continue
            rng = np.random.default_rng([self.seed, epoch, i]) if self.dropout else None
            plan = plan_sample(sample, self.tok, self.mcfg, self.dcfg, rng)
            if plan.n_tokens > budget:
                self._skip(shard, sample.key, f"sequence of {plan.n_tokens} tokens is longer than the budget {budget}")
                continue
            if not plan.pieces:
                self._skip(shard, sample.key, "nothing left to train on")
                continue
            yield i, plan

    def packs(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[list[Plan], tuple[int, int]]]:
        """(plans of one pack, position after it) forever; DataError when an epoch has nothing usable."""
        while True:
            cur: list[Plan] = []
            used = 0
            got_any = False
            for i, plan in self.plans(epoch, start):
                got_any = True
                if cur and used + plan.n_tokens > self.dcfg.max_tokens:
                    yield cur, (epoch, i)
                    cur, used = [], 0
                cur.append(plan)
                used += plan.n_tokens
            if cur:
                yield cur, (epoch + 1, 0)
            if not got_any and start == 0:
                reasons = "; ".join(f"{s['shard']} {s['key']}: {s['reason']}" for s in self.skips[:3])
                raise DataError(f"no usable samples in {len(self.shards)} shard(s)" + (f" ({reasons})" if reasons else ""))
            epoch, start = epoch + 1, 0
