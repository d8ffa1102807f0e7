"""A run killed while appending a manifest line can leave the line torn inside a multi-byte character: the next
run drops that line with a warning, redoes its unit, and ends with what a clean run writes; later runs too."""

from __future__ import annotations

import io
import logging

import pytest
from PIL import Image

from pipelines.core.executor import RunConfig, run_pipeline
from pipelines.core.stage import Stage, drop, new_record
from schemas import ImageSegment, Sample, Source, TextSegment, load_manifest, read_samples

DETAIL = "trop sombre — éclairage"


def _build(batch, cfg):
    out = []
    for rec in batch:
        n = int(rec["id"].split("-")[1])
        if n % 2:
            out.append(drop(rec, "build", "too_dark", {"luma": 0.1}, detail=DETAIL))
            continue
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (n * 20, 0, 0)).save(buf, "PNG")
        segs = (TextSegment(f"café n°{n}", role="body"), ImageSegment(buf.getvalue(), "png", 8, 8, role="frame"))
        out.append({**rec, "sample": Sample(key=rec["id"], kind="video", segments=segs, source=Source("mem://x"))})
    return out


def _run(out):
    run = RunConfig(out_dir=str(out), executor="local", max_samples_per_shard=3, chunk_size=2)
    return run_pipeline([Stage("build", _build, batch_size=2)], [new_record(f"in-{i}") for i in range(8)], run, "torn")


def _result(out):
    samples = {s.key: (s.to_json(), [im.data for im in s.images]) for s in read_samples(sorted(out.glob("*.tar")))}
    outcomes = {i: (r["status"], r.get("reason"), r.get("detail")) for i, r in load_manifest(out).items()}
    return samples, outcomes


@pytest.mark.timeout(120)
def test_a_torn_last_manifest_line_is_dropped_with_a_warning_and_the_run_resumes(tmp_path, caplog):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    _run(clean)
    _run(killed)
    # The kill: the writer stopped inside the 'é' of the last filtered record, before the last shard was closed
    # (written records are appended before a shard's stats file, so that shard has none).
    [part] = (killed / "manifest").glob("*.jsonl")
    data = part.read_bytes()
    cut = data.rindex("é".encode()) + 1
    part.write_bytes(data[:cut])
    lost = [ln for ln in data[cut:].decode("utf-8", "replace").splitlines() if '"written"' in ln]
    assert lost, "the cut should also lose a written record of the unfinished shard"
    for shard in {ln.split('"shard": "')[1].split('"')[0] for ln in lost}:
        (killed / shard.replace(".tar", "_stats.json")).unlink()
    assert not data[:cut].endswith(b"\n") and data[:cut].count(b"\n") == data[:cut].rstrip(b"\n").count(b"\n")

    with caplog.at_level(logging.WARNING, logger="braid"):
        summary = _run(killed)
    warned = [r.getMessage() for r in caplog.records if "torn last line" in r.getMessage()]
    assert warned and all(str(part) in w and "its unit runs again" in w for w in warned)
    assert (summary["inputs"], summary["written"], summary["filtered"], summary["failed"]) == (8, 4, 4, 0)
    assert summary["resumed_inputs"] == 6  # the torn record's input and the unfinished shard's input ran again
    assert _result(killed) == _result(clean)

    again = _run(killed)  # and every later run reads the output directory too
    assert again["resumed_inputs"] == 8 and _result(killed) == _result(clean)


def test_records_appended_after_a_torn_line_start_on_their_own_line(tmp_path):
    from schemas import ManifestWriter
    from schemas.manifest import read_part

    part = tmp_path / "manifest" / "shard-r00t00001.jsonl"
    w = ManifestWriter(part)
    w.append([{"id": "a", "input": "a", "status": "filtered", "detail": DETAIL}])
    w.close()
    part.write_bytes(part.read_bytes() * 2 + b'{"id": "b", "input": "b", "status": "filtered", "detail": "\xc3')
    w = ManifestWriter(part)  # a retried write task reopens its part
    w.append([{"id": "c", "input": "c", "status": "written", "shard": "s.tar", "key": "c"}])
    w.close()
    assert [r["id"] for r in read_part(part)] == ["a", "a", "c"]
