"""``braid view RUN_OR_SHARDS... --out DIR``: a paged viewer of every sample of a run, and of what was dropped.

The viewer is a folder of static files, opened straight from disk (``DIR/index.html``) or from any static file
server; no server of ours runs, nothing is fetched from elsewhere. A data engineer reviews a run on the machine
that made it or copies the folder next to the run; a folder of files keeps working after the run is archived,
and pages load only what is on screen, so 100,000 samples open as fast as 100:

    DIR/index.html          the viewer (CSS and script inline)
    DIR/data/index.js       one small row per sample: key, kind, shard, source, caption statuses, scores
    DIR/data/p/NNNNNN.js    one page of samples: texts, thumbnail paths, metadata
    DIR/data/t/NNNN.js      lower-cased texts of 1,000 samples, for search
    DIR/data/drops.js       dropped data: per reason a count and examples with their scores
    DIR/thumbs/...          thumbnails (JPEG), one file per image

Data files are scripts (not JSON fetched at run time) because browsers refuse ``fetch`` of ``file://`` URLs.
The page state lives in the address (``#page=3&kind=video&q=kitchen``), so a view can be bookmarked or shared.
Shards are read in parallel (``--workers``); samples keep shard order, then tar order.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from pipelines.commands.view_scan import scan_shard, search_text
from schemas import ShardError, iter_members
from schemas.writer import SHARD_RE, stats_path

MARKER = "braid-view.json"
TEXT_CHUNK = 1000


def shard_paths(args: list[str]) -> list[Path]:
    """Tar files named directly, or found (sorted) in the named directories; in a run folder (one with a
    ``manifest/``), shards without their stats file (unfinished) are left out."""
    out: list[Path] = []
    for a in args:
        p = Path(a)
        if p.is_dir():
            run = (p / "manifest").is_dir()
            out.extend(sorted(q for q in p.glob("*.tar") if q.is_file()
                              and not (run and SHARD_RE.match(q.name) and not stats_path(q).exists())))
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


def run_dirs(args: list[str], shards: list[Path]) -> list[Path]:
    """Run folders named, or holding a named shard: where the manifests (and so the dropped data) are."""
    dirs = {Path(a).resolve() for a in args if Path(a).is_dir()} | {s.resolve().parent for s in shards}
    return sorted(d for d in dirs if (d / "manifest").is_dir())


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shards", nargs="+", metavar="RUN_OR_SHARDS",
                        help="run folders (their shards and manifest) or shard files (.tar)")
    parser.add_argument("--out", required=True, help="the viewer folder to write (new, or an earlier view)")
    parser.add_argument("--page-size", type=int, default=50, help="samples per page (default 50)")
    parser.add_argument("--thumb", type=int, default=256, help="thumbnail size in pixels, longest side (default 256)")
    parser.add_argument("--drops", type=int, default=12, help="examples shown per drop reason (default 12)")
    parser.add_argument("--n", type=int, default=None, help="only N random samples (default: every sample)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --n and of the drop examples (default 0)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="processes reading shards (default: up to 4)")


def _check(args) -> list[Path]:
    from schemas.config import ConfigError

    if args.page_size < 1 or args.thumb < 16 or args.drops < 0 or args.workers < 1 or (args.n is not None
                                                                                       and args.n < 1):
        raise ConfigError("--page-size, --workers and --n must be at least 1, --thumb at least 16, --drops 0 or more")
    paths = shard_paths(args.shards)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ConfigError(f"no such shard: {missing[0]}")
    if not paths and not run_dirs(args.shards, []):
        raise ConfigError("no .tar shards (and no run manifest) found in the given folders")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).exists())):
        raise ConfigError(f"--out {out} exists and is not an earlier braid view; name a new folder")
    return paths


def _pick(paths: list[Path], n: int, seed: int, problems: list[str]) -> list[set[str]]:
    """Keys of ``n`` random samples per shard (one pass over the tar members, no decoding)."""
    def keys():
        for i, p in enumerate(paths):
            try:
                for key, _ in iter_members(p):
                    yield i, key
            except ShardError as e:
                problems.append(str(e))

    keep: list[set[str]] = [set() for _ in paths]
    for i, key in reservoir(keys(), n, random.Random(seed)):
        keep[i].add(key)
    return keep


def _write_js(path: Path, call: str, *args) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = ",".join(json.dumps(a, ensure_ascii=False, separators=(",", ":")) for a in args)
    path.write_text(f"{call}({body});\n", encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    from pipelines.commands.view_app import app_html
    from pipelines.commands.view_drops import collect_drops, drop_thumbnails

    t0 = time.perf_counter()
    paths = _check(args)
    out = Path(args.out)
    for sub in ("data", "thumbs"):
        shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(json.dumps({"written_by": "braid view", "sources": args.shards}))
    problems: list[str] = []
    keep = _pick(paths, args.n, args.seed, problems) if args.n else [None] * len(paths)
    jobs = [(str(p), i, str(out), args.thumb, keep[i]) for i, p in enumerate(paths)]
    if args.workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(min(args.workers, len(jobs))) as pool:
            results = list(pool.map(scan_shard, jobs))
    else:
        results = [scan_shard(j) for j in jobs]

    kinds: list[str] = []
    statuses: list[str] = []
    uris: dict[str, int] = {}
    cols: dict[str, list] = {"key": [], "kind": [], "shard": [], "uri": [], "cap": []}
    scores: dict[str, dict[int, float]] = {}
    written_logs, page, texts = [], [], []
    n = 0
    for res in results:
        problems.extend(res["problems"])
        for rec in res["samples"]:
            if rec["kind"] not in kinds:
                kinds.append(rec["kind"])
            mask = 0
            for st in rec["caps"]:
                if st not in statuses:
                    statuses.append(st)
                mask |= 1 << statuses.index(st)
            cols["key"].append(rec["key"])
            cols["kind"].append(kinds.index(rec["kind"]))
            cols["shard"].append(rec["shard"])
            cols["uri"].append(uris.setdefault(rec["uri"], len(uris)))
            cols["cap"].append(mask)
            for name, v in rec.pop("scores").items():
                scores.setdefault(name, {})[n] = v
            log = rec.pop("image_log")
            if log:
                written_logs.append((rec["key"], rec["uri"], log))
            rec.pop("caps")
            texts.append(search_text(rec))
            page.append(rec)
            n += 1
            if len(page) == args.page_size:
                _write_js(out / "data" / "p" / f"{(n - 1) // args.page_size:06d}.js", "braidPage",
                          (n - 1) // args.page_size, page)
                page = []
            if len(texts) == TEXT_CHUNK:
                _write_js(out / "data" / "t" / f"{(n - 1) // TEXT_CHUNK:04d}.js", "braidText", (n - 1) // TEXT_CHUNK,
                          texts)
                texts = []
    if page:
        _write_js(out / "data" / "p" / f"{(n - 1) // args.page_size:06d}.js", "braidPage", (n - 1) // args.page_size,
                  page)
    if texts:
        _write_js(out / "data" / "t" / f"{(n - 1) // TEXT_CHUNK:04d}.js", "braidText", (n - 1) // TEXT_CHUNK, texts)

    drops = collect_drops(run_dirs(args.shards, paths), written_logs, args.drops, args.seed)
    drop_thumbnails(drops, out, min(args.thumb, 192))
    _write_js(out / "data" / "drops.js", "braidDrops", drops)
    names = [p.name for p in paths]
    shards = [{"name": f"{p.resolve().parent.name}/{p.name}" if names.count(p.name) > 1 else p.name,
               "href": Path(os.path.relpath(p.resolve(), out.resolve())).as_posix()} for p in paths]
    index = {
        "n": n, "page_size": args.page_size, "text_chunk": TEXT_CHUNK, "kinds": kinds, "statuses": statuses,
        "shards": shards, "uris": list(uris), "cols": cols, "problems": problems[:200],
        "scores": {k: [v.get(i) for i in range(n)] for k, v in sorted(scores.items())},
        "note": (f"{n} samples from {len(paths)} shard(s)" + (f" ({args.n} random, seed {args.seed})" if args.n else "")
                 + (f"; {len(problems)} problem(s) skipped, run braid validate" if problems else "")),
    }
    _write_js(out / "data" / "index.js", "braidIndex", index)
    (out / "index.html").write_text(app_html("Braid view"), encoding="utf-8")
    for p in problems:
        print(f"braid view: skipped: {p}", file=sys.stderr)
    n_drops = sum(g["count"] for g in drops["groups"] if g["level"] != "failed")
    print(f"wrote {out / 'index.html'}: {index['note']}; {n_drops} dropped unit(s) and image(s) in "
          f"{len(drops['groups'])} group(s); {time.perf_counter() - t0:.1f} s")
    return 0
