"""``braid view SHARDS... --out page.html [--n N] [--seed S]``: random samples as one self-contained page.

Samples are drawn by reservoir sampling over every sample of the given shards (one pass, memory
for N samples only), seeded, so the same shards and seed give the same page. The page shows them
in shard order with their segments in sequence order (see ``pipelines.commands.html``).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

from schemas import SampleError, ShardError, decode_sample, iter_members

from pipelines.commands.html import page, render_sample


def shard_paths(args: list[str]) -> list[Path]:
    """Tar files named directly, or found (sorted) in the named directories."""
    out: list[Path] = []
    for a in args:
        p = Path(a)
        if p.is_dir():
            out.extend(sorted(q for q in p.glob("*.tar") if q.is_file()))
        else:
            out.append(p)
    return out


def reservoir(items, n: int, rng: random.Random) -> list:
    """A uniform sample of ``n`` items of an iterable of unknown length, in the order they came."""
    kept: list[tuple[int, object]] = []
    for i, item in enumerate(items):
        if i < n:
            kept.append((i, item))
        else:
            j = rng.randint(0, i)
            if j < n:
                kept[j] = (i, item)
    return [item for _, item in sorted(kept, key=lambda t: t[0])]


def _members(paths: list[Path], problems: list[str]):
    for p in paths:
        try:
            for key, members in iter_members(p):
                yield p, key, members
        except ShardError as e:
            problems.append(str(e))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shards", nargs="+", help="shard files (.tar) or directories holding them")
    parser.add_argument("--out", required=True, help="the HTML file to write")
    parser.add_argument("--n", type=int, default=20, help="how many random samples (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--thumb", type=int, default=320, help="thumbnail size in pixels (longest side)")


def run(args: argparse.Namespace) -> int:
    from schemas.config import ConfigError

    if args.n < 1 or args.thumb < 16:
        raise ConfigError("--n must be at least 1 and --thumb at least 16")
    paths = shard_paths(args.shards)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        raise ConfigError(f"no such shard: {missing[0]}" if missing else "no .tar shards found in the given directories")
    problems: list[str] = []
    picked = reservoir(_members(paths, problems), args.n, random.Random(args.seed))
    sections, total = [], 0
    for shard, key, members in picked:
        try:
            sample = decode_sample(key, members)
        except SampleError as e:
            problems.append(f"{shard}: {e}")
            continue
        sections.append(render_sample(sample, args.thumb, note=shard.name))
        total += 1
    note = f"{total} random samples (seed {args.seed}) from {len(paths)} shard(s)"
    if problems:
        note += f"; {len(problems)} problem(s) skipped, run braid validate"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page("Braid samples", "".join(sections), note), encoding="utf-8")
    os.replace(tmp, out)
    for p in problems:
        print(f"braid view: skipped: {p}", file=sys.stderr)
    print(f"wrote {out}: {note}")
    return 0
