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
