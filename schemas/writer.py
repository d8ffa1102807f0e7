"""Shard writing: size- and count-bounded tar shards, temp name then rename, stats file last.

A shard ``<prefix>-<NNNNNN>.tar`` is complete only when ``<prefix>-<NNNNNN>_stats.json`` exists; the
stats file is written (also via rename) after the tar is in place, so it is the completion marker.
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

from .sample import Sample
from .wds import encode_sample

SHARD_RE = re.compile(r"^(?P<prefix>.+)-(?P<index>\d{6})\.tar$")


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
    used = [int(m["index"]) for p in out_dir.glob(f"{prefix}-*.tar*") if (m := SHARD_RE.match(p.name.removesuffix(".tmp"))) and m["prefix"] == prefix]
    return max(used, default=-1) + 1


@dataclass
class _Open:
    path: Path
    tar: tarfile.TarFile
    keys: list[str] = field(default_factory=list)
    nbytes: int = 0
    kinds: dict = field(default_factory=dict)


class ShardWriter:
    """Writes samples into rolling shards; calls ``on_complete(shard_path, keys)`` after each stats file.

    Rolls over before a shard would exceed ``max_count`` samples or ``max_bytes`` of member data
    (a single sample larger than ``max_bytes`` still gets a shard of its own).
    """

    def __init__(self, out_dir: str | Path, prefix: str = "shard", max_count: int = 1000,
                 max_bytes: int = 1 << 30, on_complete: Callable[[Path, list[str]], None] | None = None):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.prefix, self.max_count, self.max_bytes = prefix, max_count, max_bytes
        self.on_complete = on_complete
        self.index = next_index(self.out_dir, prefix)
        self.current: _Open | None = None
        self.completed: list[Path] = []

    def write(self, sample: Sample) -> str:
        """Write one sample; returns the shard file name it went into."""
        members = encode_sample(sample)
        size = sum(len(b) for _, b in members)
        cur = self.current
        if cur and (len(cur.keys) >= self.max_count or (cur.keys and cur.nbytes + size > self.max_bytes)):
            self._finish()
        if self.current is None:
            path = self.out_dir / shard_name(self.prefix, self.index)
            self.index += 1
            tmp = path.with_name(path.name + ".tmp")
            self.current = _Open(path, tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT))
        cur = self.current
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            cur.tar.addfile(info, io.BytesIO(data))
        cur.keys.append(sample.key)
        cur.nbytes += size
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
        stats = {"shard": cur.path.name, "count": len(cur.keys), "bytes": cur.path.stat().st_size,
                 "member_bytes": cur.nbytes, "kinds": cur.kinds, "keys": cur.keys, "written_at": time.time()}
        atomic_write(stats_path(cur.path), json.dumps(stats, indent=1).encode())
        self.completed.append(cur.path)
        if self.on_complete:
            self.on_complete(cur.path, list(cur.keys))

    def close(self) -> None:
        self._finish()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
