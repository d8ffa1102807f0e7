"""Hostile shards: a sample JSON nested 200,000 levels deep, one holding a 100,000-digit integer, and a
10 KB tar whose two GNU sparse members unpack to 1000 MB each; each between good samples."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from samples import make_sample

from schemas import encode_sample

# ---------------------------------------------------------------------------------------------- hostile shards


def _sparse_header(name: str, real_size: int, stored: int) -> bytes:
    """A GNU sparse ('S') member header: ``stored`` bytes of data at the end of a ``real_size`` file."""
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mtime = stored, tarfile.GNUTYPE_SPARSE, 0
    hdr = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    hdr[386:398] = tarfile.itn(real_size - stored, 12, tarfile.GNU_FORMAT)  # first map entry: offset ...
    hdr[398:410] = tarfile.itn(stored, 12, tarfile.GNU_FORMAT)  # ... and length of the one data run
    hdr[483:495] = tarfile.itn(real_size, 12, tarfile.GNU_FORMAT)  # the size the member unpacks to
    hdr[148:156] = b" " * 8
    hdr[148:156] = b"%06o\0 " % sum(hdr[:512])
    return bytes(hdr)


def write_sparse_tar(path: Path, good: list[tuple[str, bytes]], key: str = "k-s", mb: int = 1000) -> Path:
    """A few KB on disk: a good sample, then sample ``key`` whose two image members claim ``mb`` MB each
    (GNU sparse members, as ``tar --sparse`` writes them), then the good sample again under another key."""
    members = encode_sample(make_sample(key, n_images=2))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in good:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar.addfile(*_member(*members[0]))
        tar.fileobj.write(b"".join(_sparse_header(n, mb * 1000 * 1000, 512) + b"\1" * 512 for n, _ in members[1:]))
        tar.offset += 2 * 1024
        for name, data in good:
            info = tarfile.TarInfo(name.replace(name.split(".", 1)[0], "k-after", 1))
            data = data.replace(name.split(".", 1)[0].encode(), b"k-after") if name.endswith(".json") else data
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return path


def _member(name: str, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, io.BytesIO(data)


def deep_json(key: str, depth: int = 200_000) -> bytes:
    """A sample JSON whose meta nests ``depth`` lists deep."""
    doc = json.loads(encode_sample(make_sample(key, n_images=1))[0][1])
    text = json.dumps({**doc, "meta": {"x": "@"}})
    return text.replace('"@"', "[" * depth + "]" * depth).encode()


def huge_int_json(key: str, digits: int = 100_000) -> bytes:
    doc = json.loads(encode_sample(make_sample(key, n_images=1))[0][1])
    return json.dumps({**doc, "meta": {"x": "@"}}).replace('"@"', "7" * digits).encode()


def make_hostile_shard(path: Path) -> Path:
    """Good sample k-0, deep JSON k-deep, good k-1, huge integer k-int, good k-2 (each bad one with its image)."""
    members: list[tuple[str, bytes]] = []
    for i, (key, bad) in enumerate([("k-0", None), ("k-deep", deep_json), ("k-1", None), ("k-int", huge_int_json),
                                    ("k-2", None)]):
        sample = encode_sample(make_sample(key, n_images=1 if bad else 2))
        members += [(sample[0][0], bad(key) if bad else sample[0][1]), *sample[1:]]
    return _write_tar(path, members)


def _write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            tar.addfile(*_member(name, data))
    return path
