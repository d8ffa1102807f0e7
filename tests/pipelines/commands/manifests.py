"""A generated run folder for status and stats tests: a manifest of any size written line by line (f-strings, no
json.dumps, so a million lines take a couple of seconds), with written, filtered, failed and split records."""

from __future__ import annotations

import json
from pathlib import Path

REASONS = ("too_small", "blurry", "irrelevant", "static")
FAILS = (("timeout", True), ("bad_html", False), ("decode_error", None))  # None: no retryable field


def write_manifest_run(out: Path, n_inputs: int, pending: int = 0, with_inputs_json: bool = True) -> dict:
    """``n_inputs`` inputs (plus ``pending`` listed in inputs.json with no record) and what status must report.

    Input i: every 10th is split into 3 parts (the first written, the second filtered ``blurry``, the third failed
    ``timeout``); else written (i % 10 in 1..5), filtered (6, 7), failed (8, 9). Written records point at one
    complete shard; a few also at an incomplete one (a killed writer), which must not count.
    """
    from samples import make_sample

    from schemas import ShardWriter

    out.mkdir(parents=True, exist_ok=True)
    with ShardWriter(out, "shard-r00", max_count=10) as w:
        w.write(make_sample("s-000"))
    (out / "shard-r00-000099.tar").write_bytes(b"")  # no stats file: incomplete
    exp = {"written": 0, "filtered": 0, "failed": 0, "pending": pending, "failed_by_reason": {},
           "filtered_by_reason": {}}

    def fail_count(kind, retry):
        c = exp["failed_by_reason"].setdefault(kind, {})
        key = "yes" if retry is True else "no" if retry is False else "unknown"
        c[key] = c.get(key, 0) + 1

    (out / "manifest").mkdir(exist_ok=True)
    lines = 0
    with open(out / "manifest" / "shard-r00.jsonl", "w", encoding="utf-8") as f:
        for i in range(n_inputs):
            iid = f"in-{i:07d}"
            uri = f"https://example.org/page/{i}.html"
            m = i % 10
            if m == 0:
                kids = [f"{iid}_{j:03d}" for j in range(3)]
                f.write(f'{{"id": "{iid}", "input": "{iid}", "uri": "{uri}", "status": "split", '
                        f'"children": {json.dumps(kids)}}}\n'
                        f'{{"id": "{kids[0]}", "input": "{iid}", "uri": "{uri}", "status": "written", '
                        f'"shard": "shard-r00-000000.tar", "key": "s-000"}}\n'
                        f'{{"id": "{kids[1]}", "input": "{iid}", "uri": "{uri}", "status": "filtered", "stage": '
                        f'"quality", "reason": "blurry", "scores": {{"sharpness": {i % 97}.5, "min_sharpness": 100}}}}\n'
                        f'{{"id": "{kids[2]}", "input": "{iid}", "uri": "{uri}", "status": "failed", "stage": '
                        f'"caption", "error_kind": "timeout", "message": "no reply in 60 s", "retryable": true}}\n')
                lines += 4
                exp["written"] += 1
                exp["filtered_by_reason"]["blurry"] = exp["filtered_by_reason"].get("blurry", 0) + 1
                fail_count("timeout", True)
            elif m <= 5:
                f.write(f'{{"id": "{iid}", "input": "{iid}", "uri": "{uri}", "status": "written", '
                        f'"shard": "shard-r00-000000.tar", "key": "s-000"}}\n')
                lines += 1
                exp["written"] += 1
            elif m <= 7:
                reason = REASONS[i % len(REASONS)]
                f.write(f'{{"id": "{iid}", "input": "{iid}", "uri": "{uri}", "status": "filtered", "stage": "images", '
                        f'"reason": "{reason}", "scores": {{"score": {i % 1000 / 1000}}}}}\n')
                lines += 1
                exp["filtered"] += 1
                exp["filtered_by_reason"][reason] = exp["filtered_by_reason"].get(reason, 0) + 1
            else:
                kind, retry = FAILS[i % len(FAILS)]
                extra = "" if retry is None else f', "retryable": {"true" if retry else "false"}'
                f.write(f'{{"id": "{iid}", "input": "{iid}", "uri": "{uri}", "status": "failed", "stage": "read", '
                        f'"error_kind": "{kind}", "message": "{kind} on {uri}"{extra}}}\n')
                lines += 1
                exp["failed"] += 1
                fail_count(kind, retry)
        f.write('{"id": "in-0000001", "input": "in-0000001", "status": "written", "shard": "shard-r00-000099.tar"}\n')
        f.write('{"id": "torn", "input": "torn", "sta')  # a killed writer's last line
    exp["lines"] = lines
    if with_inputs_json:
        ids = [f"in-{i:07d}" for i in range(n_inputs + pending)]
        (out / "inputs.json").write_text(json.dumps(ids))
    exp["inputs"] = n_inputs + pending
    exp["done"] = n_inputs
    return exp
