"""The scores file of ``braid score``: one parquet row per sample, the run's settings in the file's metadata,
parts written while a run goes (``OUT.parts/part-NNNNN.parquet``) and merged into ``OUT`` at its end.

| column | meaning |
|---|---|
| shard, key | the sample (an unreadable shard gets one row with an empty key) |
| kind, source | the sample's kind and source uri |
| status | ``scored`` (score set), ``unscored`` (the model cannot score it; ``note`` says why) or ``failed`` |
| score, ce, mse | the combined training objective, mean caption CE, mean velocity MSE |
| n_tokens, n_text_tokens, n_image_tokens | token counts |
| text_ce, image_mse, segments | per text segment CE, per generation image MSE, every segment in order |
| note | why a sample is unscored or failed |
| retryable | a failed row the next run into the same file scores again (the worker scoring it died or raised) |
"""

from __future__ import annotations

import json
import os
from pathlib import Path

COLUMNS = ("shard", "key", "kind", "source", "status", "score", "ce", "mse", "n_tokens", "n_text_tokens",
           "n_image_tokens", "text_ce", "image_mse", "segments", "note", "retryable")
META_KEY = b"braid.score"
SETTINGS = ("checkpoint", "weights", "timesteps", "seed")  # what a score depends on: the same in every row of a file


def schema():
    import pyarrow as pa

    seg = pa.struct([("seg", pa.int32()), ("kind", pa.string()), ("value", pa.float64()),
                     ("n_tokens", pa.int32()), ("loss", pa.bool_())])
    return pa.schema([("shard", pa.string()), ("key", pa.string()), ("kind", pa.string()), ("source", pa.string()),
                      ("status", pa.string()), ("score", pa.float64()), ("ce", pa.float64()), ("mse", pa.float64()),
                      ("n_tokens", pa.int32()), ("n_text_tokens", pa.int32()), ("n_image_tokens", pa.int32()),
                      ("text_ce", pa.list_(pa.float64())), ("image_mse", pa.list_(pa.float64())),
                      ("segments", pa.list_(seg)), ("note", pa.string()), ("retryable", pa.bool_())])


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
                         for s in sc.segments], "note": sc.note, "retryable": False}


def failed_row(shard: str, key: str, message: str, kind: str = "", source: str = "", retryable: bool = False) -> dict:
    return {"shard": shard, "key": key, "kind": kind, "source": source, "status": "failed", "score": None,
            "ce": None, "mse": None, "n_tokens": 0, "n_text_tokens": 0, "n_image_tokens": 0, "text_ce": [],
            "image_mse": [], "segments": [], "note": message, "retryable": retryable}


def write_table(path: Path, rows: list[dict], meta: dict) -> None:
    """``rows`` as a parquet file with the run's settings, written under a temporary name and renamed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"retryable": False, **r} for r in rows]  # rows of files written before the column existed
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


def part_files(parts: Path) -> list[Path]:
    return sorted(parts.glob("part-*.parquet")) if parts.is_dir() else []


def read_earlier(out: Path, parts: Path, meta: dict) -> list[dict]:
    """Rows of an earlier run into the same --out (final file, then parts), checked against this run's settings."""
    from schemas.config import ConfigError

    rows: list[dict] = []
    for f in ([out] if out.is_file() else []) + part_files(parts):
        try:
            got, their = read_scores(f)
        except ValueError as e:
            raise ConfigError(f"--out: {e}") from None
        for k in SETTINGS:
            if their.get(k) != meta[k]:
                raise ConfigError(f"{f} holds scores made with {k} {their.get(k)!r}, not {meta[k]!r}; "
                                  f"use another --out or delete it")
        rows.extend(got)
    return rows


def is_final(row: dict) -> bool:
    """A row a later run keeps: a sample scored, unscored or failed for good (a shard's own row is not: the
    shard is read again)."""
    return bool(row["key"]) and not (row["status"] == "failed" and row.get("retryable"))


def merge(rows: list[dict]) -> list[dict]:
    """One row per (shard, key), the latest winning, sorted by shard and key."""
    by_id: dict[tuple[str, str], dict] = {}
    for r in rows:
        by_id[(r["shard"], r["key"])] = r
    return sorted(by_id.values(), key=lambda r: (r["shard"], r["key"]))
