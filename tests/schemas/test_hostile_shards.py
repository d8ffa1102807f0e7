"""Hostile shards through the real CLI: ``braid validate``, ``braid view`` and ``braid export`` report each
malformed sample as a problem of that sample, go on with the good ones, exit with their documented status,
never print a traceback, and keep memory bounded (a 10 KB tar of sparse members must not unpack to 2 GB)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_shards import make_hostile_shard, write_sparse_tar
from samples import make_sample

from pipelines.commands.cli import main
from schemas import encode_sample

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
BAD = {"k-deep": "field 'json': nested deeper than 64 levels",
       "k-int": "field 'json': holds an integer too long to read"}
SPARSE = "is a sparse member that unpacks to 1000000000 bytes"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    hostile = make_hostile_shard(d / "hostile.tar")
    sparse = write_sparse_tar(d / "sparse.tar", encode_sample(make_sample("k-good", n_images=1)))
    assert sparse.stat().st_size <= 10 * 1024
    return {"hostile": hostile, "sparse": sparse}


def test_validate_reports_each_bad_sample_and_reads_on(shards, capsys):
    assert main(["validate", str(shards["hostile"])]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    for key, why in BAD.items():
        assert [ln for ln in lines if ln == f"{shards['hostile']}: sample {key!r}: {why}" or
                ln.startswith(f"{shards['hostile']}: sample {key!r}: {why}")], out
    assert len(lines) == 2 and "Traceback" not in out + err
    assert "1 shard(s), 5 sample(s): 2 problem(s) in 1 shard(s)" in err


def test_validate_refuses_sparse_members_and_reads_on(shards, capsys):
    assert main(["validate", str(shards["sparse"])]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{shards['sparse']}: sample 'k-s': member k-s.{i:03d}.jpg {SPARSE}; Braid shards "
                                "hold plain members" for i in range(2)]
    assert "1 shard(s), 3 sample(s): 2 problem(s) in 1 shard(s)" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["hostile", "sparse"])
def test_view_skips_the_bad_samples_and_shows_the_good(shards, tmp_path, capsys, kind):
    out_path = tmp_path / "view"
    assert main(["view", str(shards[kind]), "--out", str(out_path)]) == 0
    out, err = capsys.readouterr()
    good, bad = (["k-0", "k-1", "k-2"], BAD) if kind == "hostile" else (["k-good", "k-after"], {"k-s": SPARSE})
    assert f"{len(bad)} problem(s) skipped" in out and "Traceback" not in out + err
    for key, why in bad.items():
        assert [ln for ln in err.splitlines() if ln.startswith(f"braid view: skipped: {shards[kind]}: sample {key!r}: ")
                and why in ln], err
    written = [out_path] if out_path.is_file() else [p for p in out_path.rglob("*") if p.suffix in (".html", ".js")]
    text = "".join(p.read_text(encoding="utf-8") for p in written)
    assert all(key in text for key in good)


@pytest.mark.parametrize("fmt", ["bagel", "hf", "omnicorpus"])
@pytest.mark.parametrize("kind", ["hostile", "sparse"])
def test_export_leaves_out_the_bad_samples_and_exports_the_good(shards, tmp_path, capsys, fmt, kind):
    out_dir = tmp_path / "out"
    assert main(["export", fmt, str(shards[kind]), "--out", str(out_dir)]) == 0
    out, err = capsys.readouterr()
    bad = list(BAD) if kind == "hostile" else ["k-s"]
    dropped = [json.loads(ln) for ln in (out_dir / "dropped.jsonl").read_text().splitlines()]
    invalid = {d["key"]: d["detail"] for d in dropped if d["reason"] == "invalid_sample"}
    assert sorted(invalid) == sorted(bad)
    if kind == "hostile":
        assert all(why in invalid[key] for key, why in BAD.items())
    else:
        assert SPARSE in invalid["k-s"]
    report = json.loads((out_dir / "export.json").read_text())
    assert report["samples_read"] == (3 if kind == "hostile" else 2)
    assert f"invalid_sample {len(bad)}" in out and "Traceback" not in out + err


# The command's peak RSS. getrusage's ru_maxrss of a child started from pytest also carries the peak of the
# pytest process that spawned it (Linux keeps it across exec), so the probe reads its own VmHWM as well and takes
# the smaller (a command that unpacks the sparse members shows gigabytes in both); processes the command starts
# (view's shard readers) count through RUSAGE_CHILDREN.
PROBE = """
import re, resource, sys
from pipelines.commands.cli import main
rc = main(sys.argv[1:])
hwm = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
own = min(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, hwm)
print("RC", rc, "MAXRSS_KB", max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
"""


@pytest.mark.parametrize("argv", [["validate"], ["view", "--out", "{tmp}/v"], ["export", "bagel", "--out", "{tmp}/b"],
                                  ["export", "hf", "--out", "{tmp}/h"], ["export", "omnicorpus", "--out", "{tmp}/o"]],
                         ids=lambda a: "-".join(x for x in a if not x.startswith(("-", "{"))))
def test_memory_stays_bounded_on_sparse_members(shards, tmp_path, argv):
    args = [a.format(tmp=tmp_path) for a in argv]
    cmd = [sys.executable, "-c", PROBE, *args[:2 if args[0] == "export" else 1], str(shards["sparse"]),
           *args[2 if args[0] == "export" else 1:]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, cwd=ROOT, check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    rc, rss_kb = proc.stdout.split()[-3], int(proc.stdout.split()[-1])
    assert rc == ("1" if args[0] == "validate" else "0"), proc.stdout + proc.stderr
    assert rss_kb < 400 * 1024, f"{' '.join(args)}: {rss_kb // 1024} MB peak RSS"


def test_export_hf_reads_past_a_hostile_summary_and_runs_log(shards, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "hostile.tar").write_bytes(shards["hostile"].read_bytes())
    (run / "summary.json").write_bytes(b"[" * 200_000 + b"]" * 200_000)
    (run / "runs.jsonl").write_bytes(b'{"attempt": 0, "pipeline": "video"}\n{"attempt": ' + b"9" * 100_000 + b"}\n")
    assert main(["export", "hf", str(run / "hostile.tar"), "--out", str(tmp_path / "out")]) == 0
    out, err = capsys.readouterr()
    assert "exported 3 samples" in out and "Traceback" not in out + err
