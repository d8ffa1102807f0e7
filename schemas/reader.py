"""Reading shards without unpickling anything: plain tarfile, our own decode, member names checked.

webdataset's default decoders unpickle ``.pyd``/``.pickle`` members; this reader never does. It
accepts only regular-file members with flat, printable names and notices a truncated tar (tarfile
alone silently stops at a cut that falls on a block boundary).

Work and memory stay bounded on hostile shards: a member over ``MAX_MEMBER_BYTES`` (the JSON member
over ``MAX_JSON_BYTES``), a member that would take its sample past ``MAX_SAMPLE_BYTES`` or
``MAX_SAMPLE_MEMBERS`` (the limits live in ``schemas.wds``, which writes within them), and sparse
members (a few bytes on disk that unpack to gigabytes) are never read. Each refusal is a problem of
that sample: ``decode_sample`` raises SampleError naming it, and reading goes on with the next sample.
Layout problems of the shard itself (unsafe names, links, repeated keys, truncation) still end the
shard with ShardError.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

from schemas.sample import Sample, SampleError
from schemas.wds import (
    MAX_JSON_BYTES,
    MAX_MEMBER_BYTES,
    MAX_SAMPLE_BYTES,
    MAX_SAMPLE_MEMBERS,
    Members,
    decode_sample,
    split_member,
)


class ShardError(ValueError):
    """A shard cannot be read: the message names the shard and what is wrong."""


def check_member_name(shard: str, name: str) -> None:
    """Raise ShardError unless ``name`` is a flat, printable member name (no path tricks)."""
    if not name or name.startswith("/") or "\\" in name or ".." in name.split("/"):
        raise ShardError(f"{shard}: unsafe member name {name!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ShardError(f"{shard}: unsafe member name {name!r} (control characters)")
    if "/" in name:
        raise ShardError(f"{shard}: member {name!r} has a directory part; Braid shards are flat")


def _check_end(shard: str, path: Path, offset: int) -> None:
    """tarfile stops quietly at a cut on a block boundary or at a corrupt header: demand the end marker."""
    with open(path, "rb") as f:
        f.seek(offset)
        tail = f.read(512)
    if len(tail) < 512:
        raise ShardError(f"{shard}: truncated tar (file ends at byte {offset + len(tail)} without an end-of-archive marker)")
    if tail.strip(b"\0"):
        raise ShardError(f"{shard}: corrupt tar header at byte {offset}")


def _is_plain_tar(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(6)
    return not head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ"))


def _refusal(info: tarfile.TarInfo, suffix: str, used: int, max_member_bytes: int, max_sample_bytes: int) -> str:
    """Why a member is not read (empty when it is read)."""
    if info.issparse():
        return f"is a sparse member that unpacks to {info.size} bytes; Braid shards hold plain members"
    limit = min(max_member_bytes, MAX_JSON_BYTES) if suffix == "json" else max_member_bytes
    if info.size > limit:
        return f"has {info.size} bytes, over the limit of {limit} per member"
    if used + info.size > max_sample_bytes:
        return f"would take the sample to {used + info.size} bytes, over the limit of {max_sample_bytes} per sample"
    return ""


def iter_members(path: str | Path, max_member_bytes: int = MAX_MEMBER_BYTES, max_sample_bytes: int = MAX_SAMPLE_BYTES,
                 max_sample_members: int = MAX_SAMPLE_MEMBERS) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {suffix: bytes}) per sample, in tar order. Raises ShardError on layout problems.

    The dict is a ``schemas.wds.Members``: members refused unread (see the module docstring) are left
    out of it and named in its ``problems``, which ``decode_sample`` turns into a SampleError.
    """
    shard = str(path)
    path = Path(path)
    seen: set[str] = set()
    key: str | None = None
    group = Members()
    used = 0
    try:
        plain = _is_plain_tar(path)
        with tarfile.open(path, "r:*") as tar:
            for info in tar:
                check_member_name(shard, info.name)
                if not info.isfile():
                    raise ShardError(f"{shard}: member {info.name!r} is not a regular file; Braid shards hold only files")
                try:
                    k, suffix = split_member(info.name)
                except SampleError as e:
                    raise ShardError(f"{shard}: {e}") from None
                if k != key:
                    if key is not None:
                        yield key, group
                    if k in seen:
                        raise ShardError(f"{shard}: members of sample {k!r} are not contiguous (or the key repeats)")
                    seen.add(k)
                    key, group, used = k, Members(), 0
                if len(group) + len(group.refused) >= max_sample_members:
                    group.refuse(None, f"sample {k!r}: member {info.name} is over the limit of {max_sample_members} "
                                       "members per sample")
                    continue
                if suffix in group or suffix in group.refused:
                    raise ShardError(f"{shard}: member {info.name!r} appears twice")
                why = _refusal(info, suffix, used, max_member_bytes, max_sample_bytes)
                if why:
                    group.refuse(suffix, f"sample {k!r}: member {info.name} {why}")
                    continue
                f = tar.extractfile(info)
                group[suffix] = f.read() if f else b""
                used += len(group[suffix])
            end = tar.offset
        if plain:
            _check_end(shard, path, end)
    except (tarfile.TarError, EOFError, OSError, io.UnsupportedOperation) as e:
        if "unexpected end of data" in str(e) or isinstance(e, EOFError):
            raise ShardError(f"{shard}: truncated tar (the file ends inside a member)") from None
        raise ShardError(f"{shard}: not a readable tar file ({type(e).__name__}: {e})") from None
    if key is not None:
        yield key, group


def read_samples(paths: list[str | Path] | str | Path) -> Iterator[Sample]:
    """Every sample of the given shards, in order. Raises ShardError / SampleError on bad data."""
    for p in [paths] if isinstance(paths, (str, Path)) else paths:
        for key, members in iter_members(p):
            yield decode_sample(key, members)
