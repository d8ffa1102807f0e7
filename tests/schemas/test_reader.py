"""The reader never unpickles, rejects unsafe or non-Braid member layouts, and notices truncation."""

from __future__ import annotations

import io
import pickle
import tarfile

import pytest
from samples import make_sample

from schemas import ShardError, ShardWriter, iter_members, read_samples


def _tar(path, members, kind=tarfile.REGTYPE):
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.type = len(data), kind
            if kind == tarfile.SYMTYPE:
                info.size, info.linkname = 0, "/etc/passwd"
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return path


class _Boom:
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(MARKER),))


MARKER = ""


def test_pickled_members_are_never_unpickled(tmp_path):
    global MARKER
    MARKER = str(tmp_path / "pwned")
    good = dict(__import__("schemas").encode_sample(make_sample("k-1", n_images=1)))
    payload = pickle.dumps(_Boom())
    shard = _tar(tmp_path / "s.tar", [*good.items(), ("k-1.pyd", payload), ("k-1.pickle", payload)])
    [sample] = list(read_samples(shard))
    assert sample.key == "k-1"
    assert not (tmp_path / "pwned").exists()
    pickle.loads(payload)  # the payload is live: unpickling it would have created the marker
    assert (tmp_path / "pwned").exists()


@pytest.mark.parametrize("name", ["../k-1.json", "/abs/k-1.json", "dir/k-1.json", "k-1\n.json", "a\\b.json"])
def test_unsafe_or_nested_member_names_are_rejected(tmp_path, name):
    shard = _tar(tmp_path / "s.tar", [(name, b"{}")])
    with pytest.raises(ShardError, match="s.tar: .*(unsafe|directory part)"):
        list(iter_members(shard))


def test_links_are_rejected(tmp_path):
    shard = _tar(tmp_path / "s.tar", [("k-1.json", b"")], kind=tarfile.SYMTYPE)
    with pytest.raises(ShardError, match="not a regular file"):
        list(iter_members(shard))


def test_non_contiguous_members_are_rejected(tmp_path):
    shard = _tar(tmp_path / "s.tar", [("a.json", b"{}"), ("b.json", b"{}"), ("a.000.jpg", b"x")])
    with pytest.raises(ShardError, match="'a' are not contiguous"):
        list(iter_members(shard))


def test_truncation_on_a_block_boundary_is_noticed(tmp_path):
    with ShardWriter(tmp_path, "s") as w:
        for i in range(3):
            w.write(make_sample(f"k-{i}"))
    data = (tmp_path / "s-000000.tar").read_bytes()
    with tarfile.open(tmp_path / "s-000000.tar") as t:
        last = t.getmembers()[-1]
    cut = tmp_path / "cut.tar"
    for end in (last.offset_data + 512 * (-(-last.size // 512)), last.offset):  # after a member, at a header
        cut.write_bytes(data[:end])
        with pytest.raises(ShardError, match="truncated"):
            list(iter_members(cut))


def test_members_over_the_limits_are_refused_unread_and_reading_goes_on(tmp_path):
    from schemas import decode_sample, encode_sample
    from schemas.sample import SampleError

    samples = [make_sample(f"k-{i}", n_images=2) for i in range(3)]
    members = [m for s in samples for m in encode_sample(s)]
    big = max(len(b) for _, b in members)
    shard = _tar(tmp_path / "s.tar", [(n, b + b"\0" * 4096 if n == "k-1.001.jpg" else b) for n, b in members])

    got = dict(iter_members(shard, max_member_bytes=big + 100))
    assert list(got) == ["k-0", "k-1", "k-2"] and "001.jpg" not in got["k-1"]
    with pytest.raises(SampleError, match=r"^sample 'k-1': member k-1.001.jpg has \d+ bytes, over the limit of \d+ "
                                          "per member$"):
        decode_sample("k-1", got["k-1"])
    assert [decode_sample(k, got[k]).key for k in ("k-0", "k-2")] == ["k-0", "k-2"]

    sample_total = sum(len(b) for n, b in members if n.startswith("k-0."))
    got = dict(iter_members(shard, max_sample_bytes=sample_total))
    assert [k for k in got if got[k].problems] == ["k-1"]
    assert "would take the sample to" in got["k-1"].problems[0] and "per sample" in got["k-1"].problems[0]


def test_decode_turns_any_malformed_json_member_into_a_sample_error():
    import json

    from schemas import decode_sample, encode_sample
    from schemas.sample import SampleError

    members = {n.split(".", 1)[1]: b for n, b in encode_sample(make_sample("k-1", n_images=2))}
    doc = json.loads(members["json"])
    nested = json.dumps({**doc, "meta": {"m": "@"}}).replace('"@"', "[" * 70 + "]" * 70).encode()  # under 1000
    hostile = [b"[" * 200_000 + b"]" * 200_000, b'{"key": ' + b"9" * 100_000 + b"}", b'{"key": "k-1", "x": "\xff"}',
               nested]
    for change in ({"span": 5}, {"span": ["a", 1]}, {"extra": [1]}, {"position": "x"}, {"licence": 3}):
        hostile.append(json.dumps({**doc, "source": {**doc["source"], **change}}).encode())
    hostile.append(json.dumps({**doc, "captioner": {**doc["captioner"], "prompt_ids": 5}}).encode())
    segs = doc["segments"]
    for i, change in ((0, {"provenance": 3}), (1, {"meta": 3}), (1, {"prompt_id": 3}), (1, {"status": []})):
        hostile.append(json.dumps({**doc, "segments": [{**s, **change} if j == i else s for j, s in enumerate(segs)]})
                       .encode())
    for raw in hostile:
        with pytest.raises(SampleError, match=r"^sample 'k-1': field '(json|source\.|captioner\.|segments\[)"):
            decode_sample("k-1", {**members, "json": raw})


def test_members_per_sample_are_bounded_and_so_are_the_reasons_kept(tmp_path):
    from schemas import decode_sample, encode_sample
    from schemas.sample import SampleError

    members = encode_sample(make_sample("k-0", n_images=3)) + encode_sample(make_sample("k-1", n_images=1))
    shard = _tar(tmp_path / "s.tar", members + [(f"k-1.x{i}", b"\0" * 800) for i in range(50)])
    got = dict(iter_members(shard, max_sample_members=3))
    assert list(got["k-0"]) == ["json", "000.jpg", "001.jpg"]
    assert got["k-0"].problems == ["sample 'k-0': member k-0.002.jpg is over the limit of 3 members per sample"]
    with pytest.raises(SampleError, match="over the limit of 3 members per sample"):
        decode_sample("k-0", got["k-0"])
    got = dict(iter_members(shard, max_member_bytes=700))
    assert len(got["k-1"]) == 2 and len(got["k-1"].problems) == 9
    assert got["k-1"].problems[-1] == "42 more member(s) of the sample refused"


@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_sparse_members_written_by_gnu_tar_are_refused_unread(tmp_path, fmt):
    import subprocess

    from schemas import decode_sample, encode_sample
    from schemas.sample import SampleError

    src = tmp_path / "src"
    src.mkdir()
    (src / "k-s.json").write_bytes(encode_sample(make_sample("k-s", n_images=1))[0][1])
    with open(src / "k-s.000.jpg", "wb") as f:  # 1000 MB of which only the last 4 bytes are stored
        f.truncate(1000 * 1000 * 1000)
        f.seek(-4, 2)
        f.write(b"tail")
    shard = tmp_path / "s.tar"
    subprocess.run(["tar", "--sparse", f"--format={fmt}", "-cf", str(shard), "-C", str(src), "k-s.json", "k-s.000.jpg"],
                   check=True)
    assert shard.stat().st_size < 64 * 1024
    [(key, members)] = list(iter_members(shard))
    assert key == "k-s" and list(members) == ["json"]
    with pytest.raises(SampleError, match="member k-s.000.jpg is a sparse member that unpacks to 1000000000 bytes"):
        decode_sample(key, members)
