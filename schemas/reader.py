"""Reading shards without unpickling anything: plain tarfile, our own decode, member names checked."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

from .sample import Sample, SampleError
from .wds import decode_sample, split_member


class ShardError(ValueError):
    """A shard cannot be read: the message names the shard and what is wrong."""


def _check_name(shard: str, name: str) -> None:
    if name.startswith("/") or ".." in name.split("/") or "\\" in name:
        raise ShardError(f"{shard}: unsafe member name {name!r}")


def iter_members(path: str | Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {suffix: bytes}) per sample, in tar order. Raises ShardError on layout problems."""
    shard = str(path)
    seen: set[str] = set()
    key: str | None = None
    group: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for info in tar:
                _check_name(shard, info.name)
                if not info.isfile():
                    continue  # directories, links: never followed
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
                    key, group = k, {}
                f = tar.extractfile(info)
                group[suffix] = f.read() if f else b""
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ShardError(f"{shard}: not a readable tar file ({type(e).__name__}: {e})") from None
    if key is not None:
        yield key, group


def read_samples(paths: list[str | Path] | str | Path) -> Iterator[Sample]:
    """Every sample of the given shards, in order. Raises ShardError / SampleError on bad data."""
    for p in [paths] if isinstance(paths, (str, Path)) else paths:
        for key, members in iter_members(p):
            yield decode_sample(key, members)
