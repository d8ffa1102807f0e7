"""``braid filter SHARDS... --scores scores.parquet --where "score < 2.5" --out DIR``: keep the samples whose
score row satisfies the condition, in new shards.

The condition is ``pipelines.commands.where``'s small language over the score row's columns (``score``,
``ce``, ``mse``, ``kind``, ``status``, token counts, ... and ``max_text_ce`` / ``max_image_mse``, the
worst segment). Every input sample ends with one manifest record under ``DIR/manifest/``: ``written``
(with its new shard), ``filtered`` (the condition is false; the record holds the sample's scores) or
``failed`` (the sample does not decode, or has no row in the scores file); ``summary.json`` counts them.
Re-running into the same DIR resumes: samples with a final record are skipped, incomplete shards removed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pipelines.commands.view import shard_paths
from schemas import ManifestWriter, SampleError, ShardError, ShardWriter, decode_sample, iter_members, load_manifest
from schemas.manifest import summarize
from schemas.writer import SHARD_RE, atomic_write, is_complete

SCALARS = ("shard", "key", "kind", "source", "status", "score", "ce", "mse", "n_tokens", "n_text_tokens",
           "n_image_tokens", "note")
DERIVED = ("max_text_ce", "max_image_mse")


def _row_view(row: dict) -> dict:
    """The columns a condition sees: the scalars and the worst text / image segment."""
    view = {k: row.get(k) for k in SCALARS}
    for k in ("n_tokens", "n_text_tokens", "n_image_tokens"):
        if view[k] is not None:
            view[k] = float(view[k])
    view["max_text_ce"] = max(row.get("text_ce") or [], default=None)
    view["max_image_mse"] = max(row.get("image_mse") or [], default=None)
    return view


class ScoreIndex:
    """Score rows by sample key; a key scored in several shards is told apart by the shard's file name."""

    def __init__(self, rows: list[dict]):
        self.by_key: dict[str, list[dict]] = {}
        for r in rows:
            if r.get("key"):
                self.by_key.setdefault(r["key"], []).append(r)

    def get(self, shard: Path, key: str) -> dict | None:
        rows = self.by_key.get(key, [])
        same = [r for r in rows if Path(r["shard"]).name == shard.name]
        return (same or rows)[-1] if len(same) == 1 or len(rows) == 1 else None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shards", nargs="+", help="shard files (.tar) or directories holding them")
    parser.add_argument("--scores", required=True, help="the parquet file braid score wrote")
    parser.add_argument("--where", required=True, help='which samples to keep, e.g. "score < 2.5 and kind == \'video\'"')
    parser.add_argument("--out", required=True, help="directory for the kept samples' shards and the manifest")
    parser.add_argument("--max-count", type=int, default=1000, help="samples per output shard (default 1000)")


def _clean(out: Path) -> None:
    """Remove what a killed run leaves: temp files and shards without a stats file."""
    for p in out.glob("*.tmp"):
        p.unlink()
    for p in out.glob("*.tar"):
        if SHARD_RE.match(p.name) and not is_complete(p):
            p.unlink()


def run(args: argparse.Namespace) -> int:
    from pipelines.commands.score import read_scores
    from pipelines.commands.where import WhereError, compile_where
    from schemas.config import ConfigError

    try:
        keep = compile_where(args.where, SCALARS + DERIVED)
    except WhereError as e:
        raise ConfigError(f"--where: {e}") from None
    if args.max_count < 1:
        raise ConfigError("--max-count must be at least 1")
    paths = shard_paths(args.shards)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        raise ConfigError(f"no such shard: {missing[0]}" if missing else "no .tar shards found in the given directories")
    if not Path(args.scores).is_file():
        raise ConfigError(f"--scores: no such file {args.scores}")
    try:
        rows, _ = read_scores(args.scores)
    except ValueError as e:
        raise ConfigError(f"--scores: {e}") from None
    index = ScoreIndex(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _clean(out)
    done = load_manifest(out)
    attempt = len(list((out / "manifest").glob("filter-*.jsonl"))) if (out / "manifest").is_dir() else 0
    manifest = ManifestWriter(out / "manifest" / f"filter-{attempt:04d}.jsonl")
    pending: dict[str, dict] = {}  # key -> written record, appended once its shard is complete

    def on_complete(shard: Path, keys: list[str]) -> None:
        manifest.append([pending.pop(k) | {"shard": shard.name} for k in keys])

    t0 = time.time()
    input_ids: list[str] = []
    try:
        with ShardWriter(out, max_count=args.max_count, on_complete=on_complete) as writer:
            for p in paths:
                try:
                    for key, members in iter_members(p):
                        input_ids.append(key)
                        if key in done:
                            continue
                        manifest.append(_one(p, key, members, index, keep, args.where, writer, pending))
                except ShardError as e:
                    sid = f"shard:{p.name}"
                    input_ids.append(sid)
                    manifest.append([{"id": sid, "input": sid, "status": "failed", "stage": "filter",
                                      "error_kind": "ShardError", "message": str(e)}])
    finally:
        manifest.close()
    records = load_manifest(out)
    summary = summarize(records, input_ids, time.time() - t0, where=args.where, scores=str(args.scores))
    atomic_write(out / "inputs.json", json.dumps(input_ids).encode())
    atomic_write(out / "summary.json", json.dumps(summary, indent=1).encode())
    print(f"wrote {out}: {summary['written']} kept, {summary['filtered']} filtered, {summary['failed']} failed "
          f"of {summary['inputs']} samples")
    return 0


def _one(shard: Path, key: str, members: dict, index: ScoreIndex, keep, where: str, writer: ShardWriter,
         pending: dict) -> list[dict]:
    """The manifest records to append now for one input sample (a written one waits for its shard)."""
    base = {"id": key, "input": key}
    try:
        sample = decode_sample(key, members)
    except SampleError as e:
        return [base | {"status": "failed", "stage": "filter", "error_kind": "SampleError", "message": str(e)}]
    row = index.get(shard, key)
    if row is None:
        return [base | {"status": "failed", "stage": "filter", "error_kind": "NotScored",
                        "message": f"sample {key} of {shard.name} has no row in the scores file"}]
    view = _row_view(row)
    if not keep(view):
        scores = {k: view[k] for k in ("status", "score", "ce", "mse", "n_tokens", "max_text_ce", "max_image_mse")}
        scores |= {"text_ce": row.get("text_ce"), "image_mse": row.get("image_mse"), "note": row.get("note")}
        return [base | {"status": "filtered", "stage": "filter", "reason": f"where: {where}", "scores": scores}]
    pending[key] = base | {"status": "written", "key": key, "score": row.get("score")}
    writer.write(sample)
    return []
