"""What every exporter shares: finding shards, a staged output directory, reading with drop
accounting, size-bounded Parquet files, image headers and run summaries beside the shards.

An export is written into a temporary sibling of the output directory and renamed into place at
the end, so an interrupted export never leaves a half-written directory that looks complete.
``export.json`` in the output marks it as a Braid export; ``--overwrite`` only ever replaces a
directory that carries that marker.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from schemas.reader import ShardError, iter_members
from schemas.sample import Sample, SampleError
from schemas.wds import decode_sample
from schemas.writer import SHARD_RE, is_complete

MARKER = "export.json"


class ExportError(ValueError):
    """The export cannot start or finish: one sentence naming the path and what is wrong."""


# ---------------------------------------------------------------------------------------------- inputs


@dataclass
class ShardSet:
    shards: list[Path]
    skipped: list[str] = field(default_factory=list)  # "path: why", incomplete shards left out of directories


def resolve_shards(paths: list[str | Path]) -> ShardSet:
    """Shard files from files and directories; directories contribute only complete shards."""
    if not paths:
        raise ExportError("no shards given: name shard files (.tar) or directories that hold them")
    shards: list[Path] = []
    skipped: list[str] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.glob("*.tar") if q.is_file())
            for q in found:
                if SHARD_RE.match(q.name) and not is_complete(q):
                    skipped.append(f"{q}: incomplete (no stats file; the run that writes it has not finished)")
                else:
                    shards.append(q)
            if not found:
                raise ExportError(f"{p} holds no .tar shards")
        elif p.is_file():
            if not tarfile.is_tarfile(p):
                raise ExportError(f"{p} is not a tar shard")
            shards.append(p)
        else:
            raise ExportError(f"{p} does not exist")
    unique = list(dict.fromkeys(s.resolve() for s in shards))
    if not unique:
        raise ExportError("none of the given directories holds a complete shard: " + "; ".join(skipped))
    return ShardSet(unique, skipped)


@dataclass
class Drops:
    """Whole samples left out (with the reason), and parts of exported samples left out (counted)."""

    samples: list[dict] = field(default_factory=list)
    parts: Counter = field(default_factory=Counter)

    def sample(self, key: str, shard: str, reason: str, detail: str = "") -> None:
        self.samples.append({"key": key, "shard": shard, "reason": reason, "detail": detail})

    def by_reason(self) -> dict[str, int]:
        return dict(Counter(d["reason"] for d in self.samples))


def iter_samples(shards: list[Path], drops: Drops) -> Iterator[tuple[Path, Sample]]:
    """Every readable sample; unreadable samples and shards become drops, never exceptions."""
    for shard in shards:
        try:
            for key, members in iter_members(shard):
                try:
                    yield shard, decode_sample(key, members)
                except SampleError as e:
                    drops.sample(key, shard.name, "invalid_sample", str(e))
        except ShardError as e:
            drops.sample("*", shard.name, "unreadable_shard", str(e))


def check_any_read(n_read: int, drops: Drops) -> None:
    if n_read == 0:
        first = drops.samples[0]["detail"] if drops.samples else "the shards hold no samples"
        raise ExportError(f"no sample in the given shards could be read ({first})")


# ---------------------------------------------------------------------------------------------- output


def run_staged(shards: list[str | Path], out_dir: str | Path, overwrite: bool, export) -> dict:
    """Resolve the shards, run ``export(found, staged)`` into a staged directory, move it into place."""
    found = resolve_shards(shards)
    staged = StagedDir(out_dir, overwrite, found.shards)
    try:
        report = export(found, staged)
        staged.commit()
    except BaseException:
        staged.abort()
        raise
    return report


class StagedDir:
    """The output directory, built under a temporary sibling and moved into place by ``commit``."""

    def __init__(self, out_dir: str | Path, overwrite: bool, inputs: list[Path]):
        self.final = Path(out_dir).absolute()
        if self.final.exists():
            if not self.final.is_dir():
                raise ExportError(f"output {self.final} exists and is not a directory")
            if any(self.final.iterdir()):
                if not overwrite:
                    raise ExportError(f"output directory {self.final} exists and is not empty; "
                                      "pass --overwrite to replace it, or choose another directory")
                if not (self.final / MARKER).is_file():
                    raise ExportError(f"output directory {self.final} is not a Braid export (no {MARKER}); "
                                      "refusing to delete it, choose an empty or new directory")
        for s in inputs:
            if self.final == s.resolve().parent or self.final in s.resolve().parents:
                raise ExportError(f"output directory {self.final} contains the input shard {s}; choose another")
        self.path = self.final.with_name(f".{self.final.name}.tmp-{os.getpid()}")
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)

    def commit(self) -> Path:
        old = None
        if self.final.exists():
            old = self.final.with_name(f".{self.final.name}.old-{os.getpid()}")
            os.replace(self.final, old)
        os.replace(self.path, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final

    def abort(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


def write_marker(staged: Path, fmt: str, report: dict) -> None:
    write_json(staged / MARKER, {"format": fmt, "created": time.time(), **report})


class ParquetFiles:
    """Rows into Parquet files: a row group every ``rows_per_group`` rows or ``group_bytes`` bytes,
    a new file before one would pass ``file_bytes``. Files are named ``<stem>-NNNNN.parquet``."""

    def __init__(self, out_dir: Path, stem: str, schema, rows_per_group: int, group_bytes: int, file_bytes: int,
                 size_of=None):
        self.out_dir, self.stem, self.schema = out_dir, stem, schema
        self.rows_per_group, self.group_bytes, self.file_bytes = rows_per_group, group_bytes, file_bytes
        self.size_of = size_of or (lambda row: 0)
        self.rows: list[dict] = []
        self.row_bytes = 0
        self.writer = None
        self.file_written = 0
        self.files: list[dict] = []  # {"name", "num_rows", "num_row_groups"}

    def add(self, row: dict) -> None:
        size = self.size_of(row)
        if self.rows and (len(self.rows) >= self.rows_per_group or self.row_bytes + size > self.group_bytes):
            self._flush_group()
        self.rows.append(row)
        self.row_bytes += size

    def _flush_group(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.rows:
            return
        if self.writer is not None and self.file_written + self.row_bytes > self.file_bytes:
            self._close_file()
        if self.writer is None:
            name = f"{self.stem}-{len(self.files):05d}.parquet"
            self.files.append({"name": name, "num_rows": 0, "num_row_groups": 0})
            # snappy gives up quickly on already-compressed image bytes and still shrinks the text
            self.writer = pq.ParquetWriter(self.out_dir / name, self.schema, compression="snappy")
            self.file_written = 0
        table = pa.Table.from_pylist(self.rows, schema=self.schema)
        self.writer.write_table(table, row_group_size=len(self.rows))
        self.files[-1]["num_rows"] += len(self.rows)
        self.files[-1]["num_row_groups"] += 1
        self.file_written += self.row_bytes
        self.rows, self.row_bytes = [], 0

    def _close_file(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def close(self) -> list[dict]:
        self._flush_group()
        self._close_file()
        return self.files


# ---------------------------------------------------------------------------------------------- images


def fit_image(data: bytes, ext: str, max_pixels: int) -> tuple[bytes, str, bool] | None:
    """The bytes unchanged when the image has at most ``max_pixels`` pixels; else a downscaled re-encode
    (PNG when the image has transparency, JPEG otherwise). Returns (bytes, extension, re-encoded?), or None
    when PIL cannot read the image."""
    from PIL import Image

    try:
        im = Image.open(io.BytesIO(data))
        w, h = im.size
        if w * h <= max_pixels:
            return data, ext, False
        im.load()
    except Exception:  # noqa: BLE001 - any decoder complaint means the bytes are not a usable image
        return None
    with im:
        scale = (max_pixels / (w * h)) ** 0.5
        size = (max(1, int(w * scale)), max(1, int(h * scale)))
        alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
        small = im.convert("RGBA" if alpha else "RGB").resize(size, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    if alpha:
        small.save(buf, "PNG", optimize=True)
    else:
        small.save(buf, "JPEG", quality=95)
    return buf.getvalue(), "png" if alpha else "jpg", True


# ---------------------------------------------------------------------------------------------- provenance


def run_summaries(shards: list[Path]) -> list[dict]:
    """``summary.json`` and the last ``runs.jsonl`` entry of each run directory that holds the shards."""
    out = []
    for d in sorted({s.parent for s in shards}):
        entry: dict = {"dir": str(d)}
        summary = d / "summary.json"
        if summary.is_file():
            try:
                entry["summary"] = json.loads(summary.read_text(encoding="utf-8"))
            except (ValueError, RecursionError):  # bad JSON or UTF-8, an over-long integer, nesting too deep
                entry["summary_error"] = "summary.json is not valid JSON"
        runs = d / "runs.jsonl"
        if runs.is_file():
            lines = [ln for ln in runs.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
            for line in reversed(lines):
                try:
                    entry["last_run"] = json.loads(line)
                    break
                except (ValueError, RecursionError):
                    continue
        out.append(entry)
    return out
