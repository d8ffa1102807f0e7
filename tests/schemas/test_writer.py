"""ShardWriter: rollover by count and bytes, deterministic names and bytes, temp-then-rename, stats last."""

from __future__ import annotations

import json

import pytest
from samples import make_sample

from schemas import SampleError, ShardWriter, read_samples, stats_path


def _shards(d):
    return sorted(p.name for p in d.glob("*.tar"))


def test_rollover_by_count(tmp_path):
    with ShardWriter(tmp_path, "shard", max_count=3) as w:
        for i in range(7):
            w.write(make_sample(f"k-{i}"))
    assert _shards(tmp_path) == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    counts = [json.loads(stats_path(tmp_path / n).read_text())["count"] for n in _shards(tmp_path)]
    assert counts == [3, 3, 1]
    keys = [s.key for s in read_samples(sorted(tmp_path.glob("*.tar")))]
    assert keys == [f"k-{i}" for i in range(7)]


def test_rollover_by_bytes(tmp_path):
    one = sum(512 + -(-len(b) // 512) * 512 for _, b in __import__("schemas").encode_sample(make_sample("k-0")))
    limit = 2 * one + 1024 + 100  # room for two samples and the end marker, not three
    with ShardWriter(tmp_path, "shard", max_count=1000, max_bytes=limit) as w:
        for i in range(5):
            w.write(make_sample(f"k-{i}"))
    names = _shards(tmp_path)
    assert [json.loads(stats_path(tmp_path / n).read_text())["count"] for n in names] == [2, 2, 1]
    for n in names:  # the bound holds for the file, up to tarfile's final padding to a 10 KiB record
        assert (tmp_path / n).stat().st_size <= limit + 10240
    with ShardWriter(tmp_path / "big", "shard", max_bytes=100) as w:  # larger than the limit: a shard of its own
        w.write(make_sample("k-a"))
        w.write(make_sample("k-b"))
    assert len(_shards(tmp_path / "big")) == 2


def test_names_and_bytes_are_deterministic_and_continue_after_existing(tmp_path):
    for d in ("a", "b"):
        with ShardWriter(tmp_path / d, "p", max_count=2) as w:
            for i in range(3):
                w.write(make_sample(f"k-{i}"))
    assert _shards(tmp_path / "a") == _shards(tmp_path / "b") == ["p-000000.tar", "p-000001.tar"]
    for n in _shards(tmp_path / "a"):
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes()
    with ShardWriter(tmp_path / "a", "p") as w:  # a second writer never overwrites
        w.write(make_sample("k-9"))
    assert _shards(tmp_path / "a")[-1] == "p-000002.tar"


def test_temp_name_then_rename_then_stats_last(tmp_path):
    seen = {}

    def before_stats(path, keys):
        seen["before"] = (path.exists(), stats_path(path).exists(), keys)

    def on_complete(path, keys):
        seen["after"] = (path.exists(), stats_path(path).exists())

    w = ShardWriter(tmp_path, "s", before_stats=before_stats, on_complete=on_complete)
    w.write(make_sample("k-1"))
    assert [p.name for p in tmp_path.iterdir()] == ["s-000000.tar.tmp"]  # nothing under the final name yet
    w.close()
    assert seen["before"] == (True, False, ["k-1"])  # tar renamed into place, stats not yet written
    assert seen["after"] == (True, True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s-000000.tar", "s-000000_stats.json"]
    assert json.loads((tmp_path / "s-000000_stats.json").read_text())["keys"] == ["k-1"]


def test_invalid_sample_raises_and_writes_nothing(tmp_path):
    with ShardWriter(tmp_path, "s") as w, pytest.raises(SampleError):
        w.write(make_sample("bad.key"))
    assert list(tmp_path.iterdir()) == []
