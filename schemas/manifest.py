"""The run manifest and summary: every input ends with exactly one terminal record.

Manifest files are JSON lines under ``OUT/manifest/*.jsonl``. A record:

| field      | when            | meaning                                                          |
|------------|-----------------|------------------------------------------------------------------|
| id         | always          | the unit id (an input id, or ``<parent>_<NNN>`` for a part)      |
| uri        | when known      | the input's path or URL (credentials masked)                     |
| input      | always          | the id of the input it came from                                 |
| status     | always          | ``written``, ``filtered``, ``failed``, or ``split``              |
| shard, key | written         | where the sample is                                              |
| stage, reason, scores | filtered | which stage dropped it, why, and the scores that decided   |
| stage, error_kind, message | failed | which stage failed, the error class, a clear message       |
| retryable  | failed          | transient (network, timeout, 429/5xx, caption server): a re-run retries it |
| children   | split           | ids of the parts an input was split into (clips, documents)      |
| images     | web documents   | every image the page had that is not in the sample: src (whole), position, stage, reason, scores |

An input's outcome: its own terminal status, or for a split input the best of its parts
(written > filtered > failed). ``summary.json`` counts inputs by outcome; written + filtered +
failed == inputs, always (an input with no complete record counts as failed, ``incomplete``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from schemas.writer import is_complete

log = logging.getLogger("braid")

TERMINAL = ("written", "filtered", "failed")
STATUSES = (*TERMINAL, "split")
_RANK = {"written": 0, "filtered": 1, "failed": 2}


class ManifestWriter:
    """Appends records to one JSONL file, each flushed and synced (a kill loses at most a partial line)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held open for the writer's lifetime
        if self._f.tell() and not _ends_with_newline(self.path):
            self._f.write("\n")  # a torn line from a killed writer stays alone on its line, new records start clean

    def append(self, records: list[dict]) -> None:
        if not records:
            return
        self._f.write("".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records))
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _natural(path: Path) -> list:
    # attempt and task numbers sort as numbers: shard-r100 comes after shard-r99
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def iter_records(out_dir: str | Path) -> Iterator[dict]:
    """The final-eligible records of every manifest part, in attempt order (a later record of an id wins).

    Skipped: a torn last line (killed writer), anything that is not a record, and ``written``
    records whose shard has no stats file (the run died before the shard was complete).
    """
    out = Path(out_dir)
    complete: dict[str, bool] = {}
    for path in sorted(out.joinpath("manifest").glob("*.jsonl"), key=_natural):
        for rec in _iter_part(path):
            if rec["status"] == "written":
                shard = rec.get("shard")
                if not isinstance(shard, str) or "/" in shard:
                    continue
                if shard not in complete:
                    complete[shard] = is_complete(out / shard)
                if not complete[shard]:
                    continue
            yield rec


def load_manifest(out_dir: str | Path) -> dict[str, dict]:
    """All final records by id (``iter_records``; later records win)."""
    return {rec["id"]: rec for rec in iter_records(out_dir)}


def parse_record(line: bytes) -> dict | None:
    """One manifest line as a record, or None when it is torn or not a record."""
    try:
        rec = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if isinstance(rec, dict) and isinstance(rec.get("id"), str) and rec.get("status") in STATUSES:
        return rec
    return None


def read_part(path: str | Path) -> list[dict]:
    """The records of one manifest part, in order; a torn line or anything that is not a record is skipped.

    A last line without its newline that does not parse (the writer was killed mid-line, possibly inside a
    multi-byte character) is dropped with a warning: its unit has no final record, so the run redoes it.
    """
    return list(_iter_part(Path(path)))


def _iter_part(path: Path) -> Iterator[dict]:
    if not path.exists():
        return
    with open(path, "rb") as f:
        for line in f:
            rec = parse_record(line)
            if rec is not None:
                yield rec
            elif not line.endswith(b"\n") and line.strip():
                log.warning("%s: dropped a torn last line (%d bytes, the run writing it was stopped mid-line); "
                            "its unit runs again", path, len(line))


def outcome(unit_id: str, records: dict[str, dict]) -> str | None:
    """written / filtered / failed, or None while the unit (or one of its parts) is unfinished."""
    rec = records.get(unit_id)
    if rec is None:
        return None
    if rec["status"] != "split":
        return rec["status"]
    parts = [outcome(c, records) for c in rec.get("children", [])]
    if not parts or any(p is None for p in parts):
        return None if parts else "filtered"
    return min(parts, key=_RANK.__getitem__)


def needs_retry(unit_id: str, records: dict[str, dict]) -> bool:
    """Whether the unit, or one of its parts, failed in a way a later run retries."""
    return any(leaf["status"] == "failed" and leaf.get("retryable") for leaf in leaves(unit_id, records))


def leaves(unit_id: str, records: dict[str, dict]) -> list[dict]:
    rec = records.get(unit_id)
    if rec is None:
        return []
    if rec["status"] != "split":
        return [rec]
    return [leaf for c in rec.get("children", []) for leaf in leaves(c, records)]


def summarize(records: dict[str, dict], input_ids: list[str], wall_time_s: float, **extra) -> dict:
    """The run summary over the given inputs (see module docstring)."""
    counts: Counter = Counter()
    by_reason: Counter = Counter()
    by_error: Counter = Counter()
    parts: Counter = Counter()
    for iid in input_ids:
        out = outcome(iid, records)
        counts[out or "failed"] += 1
        if out is None:
            by_error["incomplete"] += 1
        rec = records.get(iid)
        if rec and rec["status"] == "split":
            for leaf in leaves(iid, records):
                parts[leaf["status"]] += 1
        for leaf in leaves(iid, records):
            if leaf["status"] == "filtered":
                by_reason[leaf.get("reason", "unknown")] += 1
            elif leaf["status"] == "failed":
                by_error[leaf.get("error_kind", "unknown")] += 1
    samples = sum(1 for r in records.values() if r["status"] == "written")
    summary = {
        "inputs": len(input_ids),
        "written": counts["written"],
        "filtered": counts["filtered"],
        "failed": counts["failed"],
        "samples_written": samples,
        "parts": dict(parts),
        "by_reason": dict(by_reason),
        "by_error_kind": dict(by_error),
        "wall_time_s": round(wall_time_s, 3),
    }
    summary.update(extra)
    assert summary["written"] + summary["filtered"] + summary["failed"] == summary["inputs"]
    return summary
