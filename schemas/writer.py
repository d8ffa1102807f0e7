"""Shard writing: size- and count-bounded tar shards, temp name then rename, stats file last.

A shard ``<prefix>-<NNNNNN>.tar`` is complete only when ``<prefix>-<NNNNNN>_stats.json`` exists; the
stats file is written (also via rename) after the tar is in place, so it is the completion marker.
Names depend only on the prefix and the shards already present, so the same run writes the same names.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from schemas.sample import Sample
from schemas.wds import encode_sample

SHARD_RE = re.compile(r"^(?P<prefix>.+)-(?P<index>\d{6})\.tar$")
BLOCK = 512
END_BYTES = 2 * BLOCK  # the end-of-archive marker; tarfile then pads to a 10 KiB record


def tar_bytes(members: list[tuple[str, bytes]]) -> int:
    """Bytes these members take in a tar: one header block each plus the data padded to whole blocks."""
    return sum(BLOCK + -(-len(data) // BLOCK) * BLOCK for _, data in members)


def shard_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index:06d}.tar"


def stats_path(shard: Path) -> Path:
    return shard.with_name(shard.name[: -len(".tar")] + "_stats.json")


def is_complete(shard: Path) -> bool:
    return shard.exists() and stats_path(shard).exists()


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def next_index(out_dir: Path, prefix: str) -> int:
    """The first shard index after every shard (complete or not) already under this prefix."""
    used = [-1]
    for p in out_dir.glob(f"{prefix}-*.tar*"):
        m = SHARD_RE.match(p.name.removesuffix(".tmp"))
        if m and m["prefix"] == prefix:
            used.append(int(m["index"]))
    return max(used) + 1


@dataclass
class _Open:
    path: Path
    tar: tarfile.TarFile
    keys: list[str] = field(default_factory=list)
    nbytes: int = 0
    kinds: dict = field(default_factory=dict)


class ShardWriter:
    """Writes samples into rolling shards.

    Rolls over before a shard would exceed ``max_count`` samples or ``max_bytes`` of tar data
    (headers and members; the final end-of-archive padding, at most 10 KiB, comes on top). A single
    sample larger than ``max_bytes`` still gets a shard of its own.

    Hooks, both ``fn(shard_path, keys)``: ``before_stats`` runs once the tar has its final name but
    before the stats file exists (a kill there leaves an incomplete shard that resume removes);
    ``on_complete`` runs after the stats file.
    """

    def __init__(self, out_dir: str | Path, prefix: str = "shard", max_count: int = 1000,
                 max_bytes: int = 1 << 30, on_complete: Callable[[Path, list[str]], None] | None = None,
                 before_stats: Callable[[Path, list[str]], None] | None = None):
        if max_count < 1 or max_bytes < 1:
            raise ValueError("max_count and max_bytes must be positive")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.prefix, self.max_count, self.max_bytes = prefix, max_count, max_bytes
        self.on_complete, self.before_stats = on_complete, before_stats
        self.index = next_index(self.out_dir, prefix)
        self.current: _Open | None = None
        self.completed: list[Path] = []

    def write(self, sample: Sample) -> str:
        """Write one sample; returns the shard file name it went into."""
        members = encode_sample(sample)
        size = tar_bytes(members)
        cur = self.current
        if cur and (len(cur.keys) >= self.max_count or (cur.keys and cur.nbytes + size + END_BYTES > self.max_bytes)):
            self._finish()
        if self.current is None:
            path = self.out_dir / shard_name(self.prefix, self.index)
            self.index += 1
            tmp = path.with_name(path.name + ".tmp")
            self.current = _Open(path, tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT))  # noqa: SIM115 - closed in _finish
        cur = self.current
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            cur.tar.addfile(info, io.BytesIO(data))
        cur.keys.append(sample.key)
        cur.nbytes = cur.tar.offset  # exact, extended headers for long names included
        cur.kinds[sample.kind] = cur.kinds.get(sample.kind, 0) + 1
        return cur.path.name

    def _finish(self) -> None:
        cur, self.current = self.current, None
        if cur is None:
            return
        cur.tar.close()
        tmp = cur.path.with_name(cur.path.name + ".tmp")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, cur.path)
        if self.before_stats:
            self.before_stats(cur.path, list(cur.keys))
        stats = {"shard": cur.path.name, "count": len(cur.keys), "bytes": cur.path.stat().st_size,
                 "tar_bytes": cur.nbytes, "kinds": cur.kinds, "keys": cur.keys, "written_at": time.time()}
        atomic_write(stats_path(cur.path), json.dumps(stats, indent=1).encode())
        self.completed.append(cur.path)
        if self.on_complete:
            self.on_complete(cur.path, list(cur.keys))

    def close(self) -> None:
        self._finish()

    def __enter__(self) -> ShardWriter:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc) -> None:
        self.close()
