"""Inputs of ``braid reason``: Braid shards and edit-pair tables, read into ``SourceRecord`` values.

Shards (``.tar``) are read sample by sample with ``schemas`` (never unpickled); a sample that does not
decode becomes a record with an ``error`` rather than sinking the shard. Edit tables (``.parquet``)
come in two layouts: one (source image, target image, instruction) row per pair, with column names
from ``EditConfig``; or BAGEL's ``image_list`` (encoded images) / ``instruction_list`` (per transition,
a list of alternative instructions). Image cells hold bytes or a ``{"bytes": ...}`` struct (the
Hugging Face ``Image`` feature).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.reasoning_aug.config import EditConfig
from schemas import ImageSegment, Sample, ShardError
from schemas.sample import SampleError
from schemas.wds import decode_sample

SHARD_EXTS = (".tar",)
TABLE_EXTS = (".parquet",)
_PIL_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


class TableError(ValueError):
    """A table cannot be used at all (unreadable, or without the needed columns)."""


@dataclass
class SourceRecord:
    """One source record: a sample of a shard, or a row of an edit table.

    ``pairs`` (tables only): (source image, target image, instruction alternatives) transitions.
    ``error``: why the record could not be read; it then ends ``filtered`` or ``failed`` per generator.
    """

    uri: str
    key: str
    position: int
    kind: str  # a sample kind (video, web, pair, ...) or "edit_table"
    sample: Sample | None = None
    pairs: list[tuple[ImageSegment, ImageSegment, list[str]]] = field(default_factory=list)
    error: str | None = None

    def provenance(self) -> dict:
        """What a derived sample records as its source: the input file, the key, and the original source."""
        extra = {"input": self.uri, "key": self.key, "source_kind": self.kind}
        if self.sample is not None:
            extra["source"] = self.sample.source.to_json()
        return extra

    @property
    def licence(self) -> str | None:
        return self.sample.source.licence if self.sample is not None else None


def input_type(path: str) -> str:
    """``shard``, ``table`` or ``unknown`` by extension."""
    suffix = Path(path).suffix.lower()
    return "shard" if suffix in SHARD_EXTS else "table" if suffix in TABLE_EXTS else "unknown"


def table_row_groups(path: str) -> int | None:
    """Row groups of a Parquet table (work units), or None when it cannot be opened (it fails later)."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).num_row_groups
    except Exception:  # noqa: BLE001 - any unreadable table becomes one failed input
        return None


def read_shard(path: str) -> Iterator[SourceRecord]:
    """Every sample of a shard; undecodable samples and an unreadable rest come back as error records."""
    from schemas import iter_members

    i = -1
    try:
        for i, (key, members) in enumerate(iter_members(path)):
            try:
                s = decode_sample(key, members)
                yield SourceRecord(path, key, i, s.kind, sample=s)
            except SampleError as e:
                yield SourceRecord(path, key, i, "unknown", error=f"bad sample: {e}")
    except ShardError as e:
        if i < 0:
            raise
        yield SourceRecord(path, f"after-{i}", i + 1, "unknown", error=f"rest of shard unreadable: {e}")


def image_segment(data: bytes, role: str, understanding: bool, generation: bool, provenance: dict) -> ImageSegment:
    """An ImageSegment from encoded bytes; formats other than JPEG/PNG/WebP are re-encoded as PNG."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        ext = _PIL_EXT.get(im.format or "")
        w, h = im.size
        if ext is None:
            buf = io.BytesIO()
            im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB").save(buf, "PNG")
            data, ext = buf.getvalue(), "png"
    return ImageSegment(data, ext, w, h, understanding=understanding, generation=generation, role=role,
                        provenance=provenance)


def _cell_bytes(cell) -> bytes:
    if isinstance(cell, (bytes, bytearray)):
        return bytes(cell)
    if isinstance(cell, dict) and isinstance(cell.get("bytes"), (bytes, bytearray)):
        return bytes(cell["bytes"])
    raise ValueError(f"image cell holds {type(cell).__name__}, not encoded image bytes")


def _alternatives(cell) -> list[str]:
    vals = cell if isinstance(cell, list) else [cell]
    return [v.strip() for v in vals if isinstance(v, str) and v.strip()]


def _pick(names: list[str], wanted: tuple[str, ...]) -> str | None:
    lower = {n.lower(): n for n in names}
    return next((lower[w] for w in wanted if w in lower), None)


def read_table(path: str, row_group: int, cfg: EditConfig) -> Iterator[SourceRecord]:
    """The rows of one row group of an edit table; a bad row becomes an error record."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
    except Exception as e:  # noqa: BLE001 - I/O boundary: any unreadable table is one failed input
        raise TableError(f"{path}: not a readable Parquet table ({type(e).__name__}: {e})") from None
    bagel = "image_list" in names and "instruction_list" in names
    cols = (["image_list", "instruction_list"] if bagel else
            [_pick(names, cfg.source_columns), _pick(names, cfg.target_columns), _pick(names, cfg.instruction_columns)])
    if None in cols:
        raise TableError(f"{path}: no source image, target image and instruction columns (or image_list and "
                         f"instruction_list); columns are {', '.join(names)}")
    if row_group >= pf.num_row_groups:
        return
    offset = sum(pf.metadata.row_group(g).num_rows for g in range(row_group))
    rows = pf.read_row_group(row_group, columns=cols).to_pylist()
    stem = Path(path).stem
    for j, row in enumerate(rows):
        pos = offset + j
        key = f"{stem}-r{pos:07d}"
        try:
            if bagel:
                imgs, instr = row["image_list"] or [], row["instruction_list"] or []
                datas = [_cell_bytes(c) for c in imgs]
                triples = [(datas[t], datas[t + 1], _alternatives(instr[t]) if t < len(instr) else [])
                           for t in range(len(datas) - 1)]
            else:
                triples = [(_cell_bytes(row[cols[0]]), _cell_bytes(row[cols[1]]), _alternatives(row[cols[2]]))]
            pairs = []
            for t, (a, b, alts) in enumerate(triples):
                prov = {"table": path, "row": pos, "transition": t}
                pairs.append((image_segment(a, "source", True, False, {**prov, "side": "source"}),
                              image_segment(b, "target", False, True, {**prov, "side": "target"}), alts))
            yield SourceRecord(path, key, pos, "edit_table", pairs=pairs)
        except Exception as e:  # noqa: BLE001 - a row that does not decode is data, not a crash
            yield SourceRecord(path, key, pos, "edit_table", error=f"bad row: {type(e).__name__}: {e}")
