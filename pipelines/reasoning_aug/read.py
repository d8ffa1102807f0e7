"""Stage 1, read: an input (a shard, or a row group of an edit table, for one generator) is split into one unit
per source record; a source record that gives several candidates splits once more.

A unit record holds ``gen``, ``src`` (the source: input file, key, position, kind, licence, provenance),
``payload`` (what the generator works from), ``cand`` (the candidate's index), ``out`` and ``texts`` (filled
by the generate stage); see ``common.py``. A source record a generator cannot use ends ``filtered`` here.
"""

from __future__ import annotations

import os

from pipelines.core.stage import drop, fail, split
from pipelines.reasoning_aug.checks import Rejection
from pipelines.reasoning_aug.common import choose
from pipelines.reasoning_aug.generators import BY_NAME
from pipelines.reasoning_aug.readers import TableError, read_shard, read_table
from schemas import ShardError

STAGE = "read"


def _source_info(src) -> dict:
    return {"uri": src.uri, "key": src.key, "position": src.position, "kind": src.kind, "licence": src.licence,
            "extra": src.provenance()}


def _units(src, gen: str, cfg) -> list[dict]:
    """The units of one source record: records to generate, or one filtered/failed part."""
    if src.error:
        return [{"status": "failed", "stage": STAGE, "error_kind": "bad_record", "message": src.error}]
    got = BY_NAME[gen].candidates(src, cfg)
    if isinstance(got, Rejection):
        return [{"status": "filtered", "stage": "plan", "reason": got.reason, "scores": got.scores,
                 "detail": got.message}]
    k = 1 if gen == "concept" else cfg.max_per_record  # a concept unit is the whole document
    picked = choose(len(got), k, cfg.seed, src.uri, src.key, gen)
    return [{"gen": gen, "src": _source_info(src), "payload": got[i], "cand": i, "out": {}, "texts": {}}
            for i in picked]


def read_units(batch: list[dict], cfg) -> list[dict]:
    out: list[dict] = []
    for rec in batch:
        path, gen = rec["path"], rec["gen"]
        if rec["type"] == "unknown":
            out.append(fail(rec, STAGE, "unsupported_input", f"{path}: not a shard (.tar) or table (.parquet)"))
            continue
        if not os.path.isfile(path):
            out.append(fail(rec, STAGE, "not_found", f"{path}: no such file"))
            continue
        try:
            sources = list(read_shard(path) if rec["type"] == "shard" else read_table(path, rec["row_group"], cfg.edit))
        except (ShardError, TableError) as e:
            out.append(fail(rec, STAGE, "unreadable", str(e)))
            continue
        if not sources:
            out.append(drop(rec, STAGE, "empty_input", detail=f"{path} holds no records"))
            continue
        groups = [_units(src, gen, cfg) for src in sources]
        for part in split(rec, [g[0] if len(g) == 1 else {"cands": g} for g in groups]):
            if "cands" in part:
                cands = part["cands"]
                out.extend(split({k: v for k, v in part.items() if k != "cands"}, cands))
            else:
                out.append(part)
    return out
