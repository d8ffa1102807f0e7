"""Stages: plain functions over a batch of records, with their resource needs declared as data.

A record is a dict. Keys every record has:

| key    | meaning                                                                    |
|--------|----------------------------------------------------------------------------|
| id     | the unit id (an input id, or ``<parent>_<NNN>`` for a part)                |
| input  | the id of the input it came from                                           |
| status | ``ok`` while it goes on; ``filtered``, ``failed`` or ``split`` once decided |
| uri    | the input's path or URL (kept by ``drop``, ``fail`` and ``split``, so the manifest names it) |

A stage function ``fn(batch, cfg)`` (or ``fn(batch, cfg, state)`` when the stage has a ``setup``)
gets only ``ok`` records and returns, in order, one record per input record: the same record
updated, a record marked with ``drop()`` / ``fail()``, or a ``split`` record followed by its parts
(``split()``). The last stage of a pipeline puts a ``schemas.Sample`` under ``sample``.
Stages never import Ray and do no hidden I/O beyond what they declare.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stage:
    name: str
    fn: Callable[..., list[dict]]
    cfg: Any = None
    setup: Callable[[Any], Any] | None = None  # builds per-worker state (a model, a client) once
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    batch_size: int = 8
    concurrency: int | tuple[int, int] = 1  # actor pool size, or a (min, max) range, for stages with a setup step


def new_record(unit_id: str, **payload) -> dict:
    return {"id": unit_id, "input": payload.pop("input", unit_id), "status": "ok", **payload}


def drop(rec: dict, stage: str, reason: str, scores: dict | None = None, detail: str | None = None) -> dict:
    """Mark a record filtered: which stage, why, and the scores that decided."""
    out = {"id": rec["id"], "input": rec["input"], "status": "filtered", "stage": stage, "reason": reason,
           "scores": scores or {}, **_uri(rec)}
    if detail is not None:
        out["detail"] = detail
    return out


def fail(rec: dict, stage: str, error_kind: str, message: str) -> dict:
    """Mark a record failed: which stage, the kind of error, and a clear message."""
    return {"id": rec["id"], "input": rec["input"], "status": "failed", "stage": stage,
            "error_kind": error_kind, "message": message, **_uri(rec)}


def _uri(rec: dict) -> dict:
    return {"uri": rec["uri"]} if isinstance(rec.get("uri"), str) else {}


def split(rec: dict, parts: list[dict]) -> list[dict]:
    """The record becomes a ``split`` marker followed by its parts (ids ``<id>_<NNN>``)."""
    children = []
    for i, p in enumerate(parts):
        p = {**_uri(rec), **p, "id": f"{rec['id']}_{i:03d}", "input": rec["input"], "status": p.get("status", "ok")}
        children.append(p)
    marker = {"id": rec["id"], "input": rec["input"], "status": "split", "children": [c["id"] for c in children],
              **_uri(rec)}
    return [marker, *children]


def apply_stage(stage: Stage, batch: list[dict], state: Any = None) -> list[dict]:
    """Run one stage over a batch: undecided records go through ``fn``; decided ones pass untouched.

    If ``fn`` raises on the batch, each record is retried alone; a record that still raises ends
    ``failed`` with the exception class as error kind, so one bad input never sinks a batch.
    """
    todo = [r for r in batch if r["status"] == "ok"]
    if not todo:
        return batch
    try:
        done = _call(stage, todo, state)
    except Exception:  # noqa: BLE001 - retried record by record below, so the culprit is found
        done = []
        for r in todo:
            try:
                done.extend(_call(stage, [r], state))
            except Exception as e:  # noqa: BLE001 - a per-record safety net at the stage boundary
                done.append(fail(r, stage.name, type(e).__name__, f"{stage.name}: {e}"))
    return [r for r in batch if r["status"] != "ok"] + done


def _call(stage: Stage, batch: list[dict], state: Any) -> list[dict]:
    return stage.fn(batch, stage.cfg, state) if stage.setup else stage.fn(batch, stage.cfg)
