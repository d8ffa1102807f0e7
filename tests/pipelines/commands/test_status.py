"""``braid status OUT`` (done, pending, failed by reason and retryability, from the manifest alone; a million
records in seconds) and ``braid stats OUT --reason R`` (the inputs that ended with R, with uri and scores)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from manifests import write_manifest_run

from pipelines.commands.cli import main


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return out, write_manifest_run(out, 200, pending=7)


def test_status_counts_done_pending_and_failures_by_reason(small_run, capsys):
    out, exp = small_run
    assert main(["status", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    for k in ("inputs", "done", "pending", "written", "filtered", "failed"):
        assert s[k] == exp[k], k
    assert s["failed_by_reason"] == exp["failed_by_reason"]
    assert list(s["failed_by_reason"]["decode_error"]) == ["unknown"]  # no retryable field: unknown, not permanent
    assert s["records"]["lines"] == exp["lines"]  # the torn line and the incomplete shard's record are not read
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "pending          7    3.4%" in text and "run the same command again" in text
    row = next(ln for ln in text.splitlines() if ln.strip().startswith("timeout"))
    timeouts = exp["failed_by_reason"]["timeout"]["yes"]
    assert row.split()[1:] == [str(timeouts), str(timeouts), "0", "0"]


def test_status_without_inputs_json_and_without_a_run(tmp_path, capsys):
    out = tmp_path / "run"
    exp = write_manifest_run(out, 30, with_inputs_json=False)
    assert main(["status", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["inputs"] == exp["done"] == s["done"] and s["pending"] == 0 and "inputs.json is missing" in s["inputs_from"]
    assert main(["status", str(tmp_path)]) == 1
    assert "holds no Braid run" in capsys.readouterr().err


def test_stats_lists_the_inputs_of_one_reason_with_uri_and_scores(small_run, capsys):
    out, exp = small_run
    assert main(["stats", str(out), "--reason", "blurry", "--limit", "3"]) == 0
    text = capsys.readouterr().out
    blurry = exp["filtered_by_reason"]["blurry"]
    assert blurry > 20 and text.startswith(f"{blurry} record(s) ended with reason 'blurry'; the first 3:")
    assert "in-0000000_001  https://example.org/page/0.html" in text
    assert 'scores  {"min_sharpness": 100, "sharpness": 0.5}' in text and "at stage quality" in text
    assert main(["stats", str(out), "--reason", "bad_html", "--json"]) == 0
    rows = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert len(rows) == exp["failed_by_reason"]["bad_html"]["no"] and all(r["retryable"] is False and r["uri"].startswith("https://") for r in rows)
    assert main(["stats", str(out), "--reason", "nope"]) == 1
    err = capsys.readouterr().err
    assert "no input" in err and f"blurry ({blurry})" in err and f"timeout ({exp['failed_by_reason']['timeout']['yes']})" in err


def test_stats_reason_falls_back_to_the_input_id(tmp_path, capsys):
    (tmp_path / "manifest").mkdir()
    (tmp_path / "manifest" / "shard-r00.jsonl").write_text(
        '{"id": "a_001", "input": "a", "status": "filtered", "stage": "s", "reason": "dark", "scores": {"b": 1}}\n')
    assert main(["stats", str(tmp_path), "--reason", "dark"]) == 0
    assert "a_001  a\n" in capsys.readouterr().out


@pytest.mark.timeout(300)
def test_status_on_a_million_records(tmp_path, capsys):
    out = tmp_path / "big"
    exp = write_manifest_run(out, 920_000, pending=1000)  # 920k inputs, 1,012,000 manifest lines
    assert exp["lines"] >= 1_000_000
    t0 = time.perf_counter()
    assert main(["status", str(out), "--json"]) == 0
    seconds = time.perf_counter() - t0
    s = json.loads(capsys.readouterr().out)
    assert (s["done"], s["pending"], s["records"]["lines"]) == (920_000, 1000, exp["lines"])
    print(f"braid status on {exp['lines']} manifest records: {seconds:.2f} s", file=sys.stderr)
    assert seconds < 120, seconds  # seconds on an idle core; generous for a shared, loaded CI machine
