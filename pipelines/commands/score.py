"""``braid score SHARDS... --checkpoint DIR --out scores.parquet``: one row per sample with the model's losses.

``DIR`` is a ``braid train`` run folder (scored by ``model.score.score_sample``) or a BAGEL checkpoint folder
(``llm_config.json``, ``vit_config.json``, ``ema.safetensors``, ``ae.safetensors``, ``tokenizer.json``; scored by
``model.bagel_score.score_samples_bagel`` with BAGEL's own layout and losses). Each sample is scored as if alone
(mean CE per text segment, velocity MSE per generation target at fixed timesteps and fixed noise, the combined
training objective), so a score does not depend on order. Samples are read in batches of ``--batch-size``
and scored together (a BAGEL checkpoint packs them into shared forwards within its token budget; each sample
still attends only to itself); each finished batch is written as one parquet part under ``OUT.parts/``, and
at the end the parts and any earlier ``OUT`` are merged into ``OUT`` (written by rename). Re-running with the
same ``--out`` skips samples already scored; the checkpoint, timesteps and seed must match those the earlier
rows were made with.

Every sample gets a row: ``scored`` (score set), ``unscored`` (the model cannot score it: over the
token budget, nothing to score, an image that does not decode; ``note`` says why) or ``failed`` (the
sample does not decode; a shard that cannot be read gets one row with an empty key). Scoring runs
in this process, batch by batch, with one model on the chosen device (not yet on Ray actors).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from pipelines.commands.view import shard_paths
from schemas import SampleError, ShardError, decode_sample, iter_members

COLUMNS = ("shard", "key", "kind", "source", "status", "score", "ce", "mse", "n_tokens", "n_text_tokens",
           "n_image_tokens", "text_ce", "image_mse", "segments", "note")
META_KEY = b"braid.score"


def schema():
    import pyarrow as pa

    seg = pa.struct([("seg", pa.int32()), ("kind", pa.string()), ("value", pa.float64()),
                     ("n_tokens", pa.int32()), ("loss", pa.bool_())])
    return pa.schema([("shard", pa.string()), ("key", pa.string()), ("kind", pa.string()), ("source", pa.string()),
                      ("status", pa.string()), ("score", pa.float64()), ("ce", pa.float64()), ("mse", pa.float64()),
                      ("n_tokens", pa.int32()), ("n_text_tokens", pa.int32()), ("n_image_tokens", pa.int32()),
                      ("text_ce", pa.list_(pa.float64())), ("image_mse", pa.list_(pa.float64())),
                      ("segments", pa.list_(seg)), ("note", pa.string())])


def score_row(shard: str, sample, sc) -> dict:
    """The parquet row of one sample's ``SampleScore``."""
    texts = [s for s in sc.segments if s.kind == "text"]
    images = [s for s in sc.segments if s.kind == "image"]
    return {"shard": shard, "key": sample.key, "kind": sample.kind, "source": sample.source.uri,
            "status": "scored" if sc.score is not None else "unscored", "score": sc.score, "ce": sc.ce,
            "mse": sc.mse, "n_tokens": sc.n_tokens, "n_text_tokens": sum(s.n_tokens for s in texts),
            "n_image_tokens": sum(s.n_tokens for s in images), "text_ce": [s.value for s in texts],
            "image_mse": [s.value for s in images],
            "segments": [{"seg": s.seg, "kind": s.kind, "value": s.value, "n_tokens": s.n_tokens, "loss": s.loss}
                         for s in sc.segments], "note": sc.note}


def failed_row(shard: str, key: str, message: str, kind: str = "", source: str = "") -> dict:
    return {"shard": shard, "key": key, "kind": kind, "source": source, "status": "failed", "score": None,
            "ce": None, "mse": None, "n_tokens": 0, "n_text_tokens": 0, "n_image_tokens": 0, "text_ce": [],
            "image_mse": [], "segments": [], "note": message}


def _write_table(path: Path, rows: list[dict], meta: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows, schema=schema()).replace_schema_metadata({META_KEY: json.dumps(meta)})
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read_scores(path: str | Path) -> tuple[list[dict], dict]:
    """(rows, the run's settings) of a scores file; ValueError with one sentence when it is not one."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable parquet file ({e})") from None
    missing = [c for c in ("shard", "key", "status", "score") if c not in table.column_names]
    if missing:
        raise ValueError(f"{path} is not a braid score file: it has no column {missing[0]!r}")
    meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
    return table.to_pylist(), meta


def _earlier(out: Path, parts: Path, meta: dict) -> list[dict]:
    """Rows of an earlier run into the same --out (final file, then parts), checked against this run."""
    rows: list[dict] = []
    files = ([out] if out.is_file() else []) + (sorted(parts.glob("part-*.parquet")) if parts.is_dir() else [])
    from schemas.config import ConfigError

    for f in files:
        try:
            got, their = read_scores(f)
        except ValueError as e:
            raise ConfigError(f"--out: {e}") from None
        for k in ("checkpoint", "weights", "timesteps", "seed"):
            if their.get(k) != meta[k]:
                raise ConfigError(f"{f} holds scores made with {k} {their.get(k)!r}, not {meta[k]!r}; "
                                  f"use another --out or delete it")
        rows.extend(got)
    return rows


def _merge(rows: list[dict]) -> list[dict]:
    """One row per (shard, key), the latest winning; a shard's failure row goes if its samples were all read."""
    by_id: dict[tuple[str, str], dict] = {}
    for r in rows:
        by_id[(r["shard"], r["key"])] = r
    return list(by_id.values())


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shards", nargs="+", help="shard files (.tar) or directories holding them")
    parser.add_argument("--checkpoint", required=True, help="a braid train run folder or a BAGEL checkpoint folder "
                        "(llm_config.json, vit_config.json, ema.safetensors, ae.safetensors, tokenizer files)")
    parser.add_argument("--out", required=True, help="the parquet file to write (re-running resumes it)")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per written part (default 64)")
    parser.add_argument("--timesteps", default="0.25,0.5,0.75",
                        help="flow-matching timesteps the image MSE is averaged over (default 0.25,0.5,0.75)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fixed noise (default 0)")
    parser.add_argument("--weights", default="auto", choices=("auto", "ema", "model"))
    parser.add_argument("--device", default=None)


def _timesteps(text: str) -> tuple[float, ...]:
    from schemas.config import ConfigError

    try:
        ts = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ConfigError(f"--timesteps must be comma-separated numbers, not {text!r}") from None
    if not ts or any(not 0.0 < t < 1.0 for t in ts):
        raise ConfigError("--timesteps must be one or more numbers strictly between 0 and 1")
    return ts


def load_checkpoint(path: str, device: str | None, weights: str = "auto"):
    """(bundle, ``score_many(bundle, samples, timesteps, seed) -> [SampleScore]``) for a ``braid train`` run folder
    or a BAGEL checkpoint folder; ConfigError naming what is wrong."""
    from model.bagel_load import is_bagel_folder
    from schemas.config import ConfigError

    if is_bagel_folder(path):
        from model.bagel_score import load_bagel_bundle, score_samples_bagel

        try:
            return load_bagel_bundle(path, device, weights), score_samples_bagel
        except ValueError as e:
            raise ConfigError(f"--checkpoint: {e}") from None
    from model.run_folder import InferError, load_run
    from model.score import score_sample

    def score_many(bundle, samples, timesteps, seed):
        return [score_sample(bundle, s, timesteps, seed) for s in samples]

    try:
        return load_run(path, device, weights=weights), score_many
    except InferError as e:
        raise ConfigError(f"--checkpoint: {e}") from None


def run(args: argparse.Namespace) -> int:
    from schemas.config import ConfigError

    if args.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    ts = _timesteps(args.timesteps)
    paths = shard_paths(args.shards)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        raise ConfigError(f"no such shard: {missing[0]}" if missing else "no .tar shards found in the given directories")
    out = Path(args.out)
    parts = out.with_name(out.name + ".parts")
    bundle, score_many = load_checkpoint(args.checkpoint, args.device, args.weights)
    meta = {"checkpoint": str(Path(args.checkpoint).resolve()), "weights": bundle.weights, "timesteps": list(ts),
            "seed": args.seed}
    earlier = _earlier(out, parts, meta)
    done = {(r["shard"], r["key"]) for r in earlier if r["key"]}
    parts.mkdir(parents=True, exist_ok=True)
    n_part = len(list(parts.glob("part-*.parquet")))
    t0, n_new, n_skipped = time.time(), 0, 0
    batch: list = []  # rows, or (shard, sample) still to score, in input order

    def flush():
        nonlocal n_part, batch
        todo = [b for b in batch if isinstance(b, tuple)]
        scores = iter(score_many(bundle, [s for _, s in todo], ts, args.seed))
        rows = [b if isinstance(b, dict) else score_row(b[0], b[1], next(scores)) for b in batch]
        if rows:
            _write_table(parts / f"part-{n_part:05d}.parquet", rows, meta)
            n_part += 1
        batch = []

    for p in paths:
        shard = str(p.resolve())
        try:
            for key, members in iter_members(p):
                if (shard, key) in done:
                    n_skipped += 1
                    continue
                try:
                    sample = decode_sample(key, members)
                except SampleError as e:
                    batch.append(failed_row(shard, key, str(e)))
                else:
                    batch.append((shard, sample))
                n_new += 1
                if len(batch) >= args.batch_size:
                    flush()
        except ShardError as e:
            batch.append(failed_row(shard, "", str(e)))
            print(f"braid score: {e}", file=sys.stderr)
    flush()
    rows = _merge(earlier + [r for f in sorted(parts.glob("part-*.parquet")) for r in read_scores(f)[0]])
    rows.sort(key=lambda r: (r["shard"], r["key"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_table(out, rows, meta)
    for f in parts.glob("part-*.parquet"):
        f.unlink()
    parts.rmdir()
    counts = {s: sum(r["status"] == s for r in rows) for s in ("scored", "unscored", "failed")}
    print(f"wrote {out}: {len(rows)} rows ({counts['scored']} scored, {counts['unscored']} unscored, "
          f"{counts['failed']} failed); {n_new} scored now, {n_skipped} already scored, {time.time() - t0:.1f} s")
    return 0
