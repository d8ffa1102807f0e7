"""``braid stats OUT_DIR``: a run's summary, human-readable; ``--reason R`` lists the inputs that ended with R.

Reads ``summary.json``; when it is missing or unreadable (a run that died before the end), the
summary is recomputed from the manifest: inputs from ``inputs.json``, or, failing that, every input
the manifest mentions. ``--reason R [--limit N]`` lists the final filtered or failed records whose reason
(or error kind) is R: id, the input's uri (``uri``, else the input id), stage, scores and detail, in manifest
order. Exit status: 0, or 1 when OUT_DIR holds no run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from schemas import load_manifest, summarize
from schemas.writer import SHARD_RE, is_complete, stats_path


def load_summary(out: Path) -> tuple[dict | None, str]:
    """(summary, where it came from); (None, why) when the directory holds no run."""
    note = ""
    path = out / "summary.json"
    if path.is_file():
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(summary, dict) and {"inputs", "written", "filtered", "failed"} <= summary.keys():
                return summary, "summary.json"
            note = "summary.json is malformed"
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            note = "summary.json is not valid JSON"
    else:
        note = "summary.json is missing"
    if not (out / "manifest").is_dir():
        return None, f"{out} holds no Braid run ({note}, and there is no manifest/)"
    records = load_manifest(out)
    try:
        ids = json.loads((out / "inputs.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        ids = None
    if not isinstance(ids, list):
        ids = sorted({r["input"] for r in records.values() if isinstance(r.get("input"), str)})
        note += "; inputs.json is missing, so inputs are those the manifest mentions"
    summary = summarize(records, ids, 0.0)
    summary["wall_time_s"] = None
    summary["shards"] = len([p for p in out.glob("*.tar") if SHARD_RE.match(p.name) and is_complete(p)])
    return summary, f"recomputed from the manifest ({note})"


def _shard_bytes(out: Path) -> int:
    total = 0
    for p in out.glob("*.tar"):
        if SHARD_RE.match(p.name) and stats_path(p).exists():
            total += p.stat().st_size
    return total


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:5.1f}%" if total else "    -"


def format_summary(summary: dict, source: str, out: Path) -> str:
    inputs = summary["inputs"]
    lines = [f"run       {out}" + (f"  (pipeline {summary['pipeline']}, attempt {summary.get('attempt', 0)})"
                                    if summary.get("pipeline") else ""),
             f"source    {source}", "",
             f"inputs    {inputs:>8}"]
    for k in ("written", "filtered", "failed"):
        lines.append(f"{k:<9} {summary[k]:>8}  {_pct(summary[k], inputs)}")
    check = summary["written"] + summary["filtered"] + summary["failed"]
    if check != inputs:
        lines.append(f"WARNING   written + filtered + failed = {check}, not {inputs}")
    size = _shard_bytes(out)
    lines += ["", f"samples written  {summary.get('samples_written', 0)} in {summary.get('shards', 0)} shard(s)"
              + (f", {size / 1e6:.1f} MB" if size else "")]
    if summary.get("parts"):
        lines.append("parts            " + ", ".join(f"{k} {v}" for k, v in sorted(summary["parts"].items())))
    if summary.get("resumed_inputs"):
        lines.append(f"resumed inputs   {summary['resumed_inputs']} already final before this attempt")
    for title, key in (("filtered by reason", "by_reason"), ("failed by error kind", "by_error_kind")):
        counts = summary.get(key) or {}
        if counts:
            lines += ["", title]
            width = max(len(k) for k in counts)
            lines += [f"  {k:<{width}}  {v:>6}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    if summary.get("wall_time_s") is not None:
        lines += ["", f"wall time  {summary['wall_time_s']:.1f} s"]
    return "\n".join(lines)


def records_with_reason(out: Path, reason: str) -> tuple[list[dict], Counter]:
    """The final filtered / failed records whose reason or error kind is ``reason``, in manifest order, and
    how many final records end with each reason (to suggest names when ``reason`` matches none)."""
    from schemas.manifest import iter_records

    latest: dict[str, dict] = {}
    for rec in iter_records(out):
        latest.pop(rec["id"], None)  # re-insert: a later record moves to the end, as it is the one that counts
        latest[rec["id"]] = rec
    reasons: Counter = Counter()
    hits = []
    for rec in latest.values():
        why = rec.get("reason") if rec["status"] == "filtered" else rec.get("error_kind")
        if rec["status"] in ("filtered", "failed"):
            reasons[str(why)] += 1
            if why == reason:
                hits.append(rec)
    return hits, reasons


def format_record(rec: dict) -> str:
    uri = rec.get("uri") or rec.get("input")
    head = f"{rec['id']}  {uri}" if uri != rec["id"] else rec["id"]
    lines = [head, f"    {rec['status']} at stage {rec.get('stage', '?')}"]
    if rec.get("scores"):
        lines.append("    scores  " + json.dumps(rec["scores"], ensure_ascii=False, sort_keys=True))
    text = rec.get("detail") or rec.get("message")
    if text:
        lines.append(f"    {'detail ' if rec.get('detail') else 'message'} {text}")
    if rec.get("retryable") is not None:
        lines.append(f"    retryable {'yes' if rec['retryable'] else 'no'}")
    return "\n".join(lines)


def list_reason(out: Path, reason: str, limit: int, as_json: bool) -> int:
    hits, reasons = records_with_reason(out, reason)
    if not hits:
        known = ", ".join(f"{k} ({v})" for k, v in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
        print(f"braid stats: no input of {out} ended with reason {reason!r}"
              + (f"; reasons in this run: {known}" if known else "; nothing was filtered or failed"), file=sys.stderr)
        return 1
    shown = hits[:limit]
    if as_json:
        for rec in shown:
            print(json.dumps({**rec, "uri": rec.get("uri") or rec.get("input")}, ensure_ascii=False, sort_keys=True))
        return 0
    print(f"{len(hits)} record(s) ended with reason {reason!r}" + (f"; the first {len(shown)}:" if len(shown) < len(hits)
                                                                    else ":"))
    for rec in shown:
        print(format_record(rec))
    return 0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", help="a run's output directory")
    parser.add_argument("--json", action="store_true", help="print JSON instead (one record a line with --reason)")
    parser.add_argument("--reason", help="list the inputs that ended with this filter reason or error kind "
                        "(default: print the summary)")
    parser.add_argument("--limit", type=int, default=20, help="most records --reason lists (default 20)")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out_dir)
    if not out.is_dir():
        print(f"braid stats: {out} is not a directory", file=sys.stderr)
        return 1
    if args.reason is not None:
        if args.limit < 1:
            from schemas.config import ConfigError

            raise ConfigError("--limit must be at least 1")
        if not (out / "manifest").is_dir():
            print(f"braid stats: {out} holds no Braid run (no manifest/ folder)", file=sys.stderr)
            return 1
        return list_reason(out, args.reason, args.limit, args.json)
    summary, source = load_summary(out)
    if summary is None:
        print(f"braid stats: {source}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, indent=1, sort_keys=True))
    else:
        print(format_summary(summary, source, out))
    return 0
