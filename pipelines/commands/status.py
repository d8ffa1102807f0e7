"""``braid status OUT``: what is done, pending and failed, from the manifest alone.

Done inputs have a final outcome (written, filtered or failed; a split input once every part has one);
pending inputs are those ``inputs.json`` lists without one (a run that stopped, or is still going). Failed
records are counted by reason (``error_kind``) and by whether a later run retries them (the record's
``retryable``; a record without it is counted as unknown). No shard is opened: one streaming pass over
``manifest/*.jsonl`` keeps a few fields per record, so a million records take seconds and modest memory.

Exit status: 0, or 1 when OUT holds no run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from schemas.manifest import iter_records, outcome


def read_inputs(out: Path) -> list[str] | None:
    try:
        ids = json.loads((out / "inputs.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return ids if isinstance(ids, list) and all(isinstance(i, str) for i in ids) else None


def compute_status(out: str | Path) -> dict:
    """The status of a run as a JSON-ready dict (see module docstring)."""
    out = Path(out)
    # id -> the few fields the counts need (``schemas.manifest.outcome`` reads status and children)
    recs: dict[str, dict] = {}
    ids = read_inputs(out)
    mentioned: set[str] | None = set() if ids is None else None
    n_lines = 0
    for r in iter_records(out):
        n_lines += 1
        st = r["status"]
        if st == "failed":
            recs[r["id"]] = {"status": st, "kind": str(r.get("error_kind") or "unknown"), "retry": r.get("retryable")}
        elif st == "split":
            recs[r["id"]] = {"status": st, "children": r.get("children") or []}
        else:
            recs[r["id"]] = {"status": st}
        if mentioned is not None and isinstance(r.get("input"), str):
            mentioned.add(r["input"])
    source = "inputs.json"
    if ids is None:
        ids, source = sorted(mentioned), "the inputs the manifest mentions (inputs.json is missing)"

    counts: Counter = Counter()
    for iid in ids:
        counts[outcome(iid, recs) or "pending"] += 1
    failed: dict[str, Counter] = {}
    filtered_parts = written_parts = 0
    for rec in recs.values():
        st = rec["status"]
        if st == "failed":
            retry = rec["retry"]
            failed.setdefault(rec["kind"], Counter())["yes" if retry is True else "no" if retry is False else "unknown"] += 1
        elif st == "written":
            written_parts += 1
        elif st == "filtered":
            filtered_parts += 1
    done = counts["written"] + counts["filtered"] + counts["failed"]
    return {
        "out": str(out), "inputs": len(ids), "inputs_from": source, "done": done, "pending": counts["pending"],
        "written": counts["written"], "filtered": counts["filtered"], "failed": counts["failed"],
        "records": {"lines": n_lines, "final": len(recs), "samples_written": written_parts,
                    "filtered": filtered_parts, "failed": sum(sum(c.values()) for c in failed.values())},
        "failed_by_reason": {k: dict(c) for k, c in sorted(failed.items(), key=lambda kv: -sum(kv[1].values()))},
    }


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:5.1f}%" if total else "    -"


def format_status(s: dict) -> str:
    n = s["inputs"]
    lines = [f"run      {s['out']}", f"inputs   {n:>9}  (from {s['inputs_from']})",
             (f"done     {s['done']:>9}  {_pct(s['done'], n)}   written {s['written']}, "
              f"filtered {s['filtered']}, failed {s['failed']}"),
             f"pending  {s['pending']:>9}  {_pct(s['pending'], n)}"
             + ("   (no final record yet: run the same command again to finish them)" if s["pending"] else "")]
    fr = s["failed_by_reason"]
    if fr:
        width = max(12, *(len(k) for k in fr))
        lines += ["", f"failed records by reason ({s['records']['failed']}; clips and documents count one each)",
                  f"  {'reason':<{width}}  {'records':>8}  {'retryable':>9}  {'permanent':>9}  {'unknown':>8}"]
        for k, c in fr.items():
            lines.append(f"  {k:<{width}}  {sum(c.values()):>8}  {c.get('yes', 0):>9}  {c.get('no', 0):>9}  "
                         f"{c.get('unknown', 0):>8}")
        retry = sum(c.get("yes", 0) for c in fr.values())
        if retry:
            lines.append(f"  {retry} transient failure(s) (network, timeouts, server errors): the next run of the "
                         "same command retries their inputs (unless --no-retry-failed)")
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", help="a run's output directory")
    parser.add_argument("--json", action="store_true", help="print the status as JSON (default: a table)")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out_dir)
    if not (out / "manifest").is_dir():
        print(f"braid status: {out} holds no Braid run (no manifest/ folder)", file=sys.stderr)
        return 1
    s = compute_status(out)
    print(json.dumps(s, indent=1) if args.json else format_status(s))
    return 0
