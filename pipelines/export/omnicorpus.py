"""Export shards as OmniCorpus / OBELICS-style documents: aligned ``texts`` / ``images`` lists with a null in
the other modality's slot, per-slot ``metadata`` and document-level ``general_metadata``.

| field            | Parquet type                  | JSONL type        | meaning                                      |
|------------------|-------------------------------|-------------------|----------------------------------------------|
| texts            | list<string>                  | list              | the text of each text slot, null at images   |
| images           | list<binary> or list<string>  | list              | image bytes (``embed``) or a path relative to the output directory (``files``), null at texts |
| metadata         | list<string> (JSON objects)   | list of objects   | per slot: role, loss flags, or image size, hash, understanding/generation, provenance |
| general_metadata | string (JSON object)          | object            | id (the Braid key), kind, url, licence, span or position, captioner, meta, schema_version |

``document_to_sample`` turns a document back into the Braid sample it came from.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from pipelines.export.common import (
    Drops,
    ExportError,
    ParquetFiles,
    check_any_read,
    iter_samples,
    run_staged,
    write_marker,
)
from schemas.sample import ImageSegment, Sample, sample_from_json


@dataclass(frozen=True)
class OmniCorpusExportConfig:
    """Settings of ``braid export omnicorpus``.

    images: ``embed`` (bytes inside the documents) or ``files`` (written under ``images/``, paths in the documents).
    format: ``parquet`` or ``jsonl`` (JSONL needs ``images: files``).
    rows_per_group / group_bytes / file_bytes: Parquet row groups and file rollover (image bytes).
    """

    images: str = "embed"
    format: str = "parquet"
    rows_per_group: int = 100
    group_bytes: int = 128 << 20
    file_bytes: int = 500 << 20

    def __post_init__(self):
        if self.images not in ("embed", "files"):
            raise ValueError(f"images must be 'embed' or 'files', not {self.images!r}")
        if self.format not in ("parquet", "jsonl"):
            raise ValueError(f"format must be 'parquet' or 'jsonl', not {self.format!r}")
        if self.format == "jsonl" and self.images == "embed":
            raise ValueError("format 'jsonl' needs images 'files' (image bytes do not belong in JSON lines)")
        if min(self.rows_per_group, self.group_bytes, self.file_bytes) < 1:
            raise ValueError("rows_per_group, group_bytes and file_bytes must be positive")

    @classmethod
    def tiny(cls) -> OmniCorpusExportConfig:
        return cls(rows_per_group=2, group_bytes=20_000, file_bytes=40_000)


def sample_document(sample: Sample, image_ref=None) -> dict:
    """The document of one sample; ``image_ref(index, segment)`` gives an image slot (default: the bytes)."""
    doc = sample.to_json()
    texts, images, metadata = [], [], []
    n = 0
    for seg, meta in zip(sample.segments, doc.pop("segments")):
        meta = {k: v for k, v in meta.items() if k not in ("type", "text", "index")}
        if isinstance(seg, ImageSegment):
            texts.append(None)
            images.append(image_ref(n, seg) if image_ref else seg.data)
            n += 1
        else:
            texts.append(seg.text)
            images.append(None)
        metadata.append(meta)
    source = doc.pop("source")
    general = {"id": doc.pop("key"), "url": source.pop("uri"), **source, **doc}
    return {"texts": texts, "images": images, "metadata": metadata, "general_metadata": general}


def document_to_sample(doc: dict, read_image=None) -> Sample:
    """The Braid sample a document came from (``read_image(slot)`` turns an image slot into bytes)."""
    meta = [json.loads(m) if isinstance(m, str) else m for m in doc["metadata"]]
    general = doc["general_metadata"]
    general = dict(json.loads(general) if isinstance(general, str) else general)
    segments, images = [], []
    for text, image, m in zip(doc["texts"], doc["images"], meta):
        if image is not None:
            segments.append({"type": "image", "index": len(images), **m})
            images.append(read_image(image) if read_image else image)
        else:
            segments.append({"type": "text", "text": text, **m})
    source = {k: general.pop(k) for k in ("licence", "span", "position", "extra") if k in general}
    source["uri"] = general.pop("url")
    sample_json = {"key": general.pop("id"), "segments": segments, "source": source, **general}
    return sample_from_json(sample_json, images)


def export_omnicorpus(shards: list[str | Path], out_dir: str | Path,
                      cfg: OmniCorpusExportConfig = OmniCorpusExportConfig(), overwrite: bool = False) -> dict:
    """Export the samples of ``shards`` into ``out_dir`` as documents; returns the report."""
    return run_staged(shards, out_dir, overwrite, lambda found, staged: _export(found.shards, found.skipped, staged.path, cfg))


def _schema(cfg: OmniCorpusExportConfig):
    import pyarrow as pa

    image = pa.binary() if cfg.images == "embed" else pa.string()
    return pa.schema([("texts", pa.list_(pa.string())), ("images", pa.list_(image)),
                      ("metadata", pa.list_(pa.string())), ("general_metadata", pa.string())])


def _file_writer(tmp: Path, shard: Path, sample: Sample):
    """An ``image_ref`` that writes each image under ``images/<shard>/`` and returns its relative path."""

    def ref(n: int, seg: ImageSegment) -> str:
        rel = posixpath.join("images", shard.name.removesuffix(".tar"), f"{sample.key}.{n:03d}.{seg.ext}")
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(seg.data)
        return rel

    return ref


def _export(shards: list[Path], skipped: list[str], tmp: Path, cfg: OmniCorpusExportConfig) -> dict:
    drops = Drops()
    kinds: Counter = Counter()
    n_read = n_images = 0
    parquet = None
    if cfg.format == "parquet":
        (tmp / "data").mkdir()
        parquet = ParquetFiles(tmp / "data", "documents", _schema(cfg), cfg.rows_per_group, cfg.group_bytes,
                               cfg.file_bytes, size_of=lambda r: sum(len(i) for i in r["images"] if i))
    with contextlib.ExitStack() as stack:
        jsonl = stack.enter_context(open(tmp / "documents.jsonl", "w", encoding="utf-8")) if parquet is None else None
        for shard, sample in iter_samples(shards, drops):
            n_read += 1
            ref = _file_writer(tmp, shard, sample) if cfg.images == "files" else None
            doc = sample_document(sample, ref)
            n_images += len(sample.images)
            kinds[sample.kind] += 1
            if parquet is not None:
                parquet.add({**doc, "metadata": [json.dumps(m, ensure_ascii=False, sort_keys=True)
                                                 for m in doc["metadata"]],
                             "general_metadata": json.dumps(doc["general_metadata"], ensure_ascii=False,
                                                            sort_keys=True)})
            else:
                jsonl.write(json.dumps(doc, ensure_ascii=False, sort_keys=True) + "\n")
    files = parquet.close() if parquet is not None else None
    check_any_read(n_read, drops)
    if drops.samples:
        with open(tmp / "dropped.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in drops.samples)
    report = {"shards": [str(s) for s in shards], "skipped_shards": skipped, "samples_read": n_read,
              "documents": sum(kinds.values()), "images": n_images, "kinds": dict(sorted(kinds.items())),
              "dropped_samples": drops.by_reason(),
              "files": [f"data/{f['name']}" for f in files] if files is not None else ["documents.jsonl"],
              "config": asdict(cfg)}
    write_marker(tmp, "omnicorpus", report)
    (tmp / "README.md").write_text(_readme(report, cfg), encoding="utf-8")
    return report


def _readme(rep: dict, cfg: OmniCorpusExportConfig) -> str:
    where = ("embedded as encoded bytes" if cfg.images == "embed"
             else "written under `images/`; each slot holds the path relative to this directory")
    lines = ["# Braid samples as OmniCorpus-style documents", "",
             f"{rep['documents']} documents, {rep['images']} images ({where}), from {len(rep['shards'])} shards.", "",
             ("Each document: `texts` and `images` have one slot per segment in order, with null in the other "
             "modality's slot; `metadata` has one JSON object per slot (text: role, loss; image: size, sha256, "
             "understanding/generation, role, provenance); `general_metadata` holds `id` (the Braid sample key), "
             "`kind`, `url`, licence, time span or document position, captioner and sample meta."), "",
             "| kind | documents |", "|---|---|"]
    lines += [f"| {k} | {n} |" for k, n in rep["kinds"].items()]
    lines += ["", "Files: " + ", ".join(f"`{f}`" for f in rep["files"]) + "."]
    if rep["dropped_samples"]:
        lines += ["", "Unreadable samples left out (see `dropped.jsonl`): "
                  + ", ".join(f"{k} ({v})" for k, v in rep["dropped_samples"].items()) + "."]
    return "\n".join(lines) + "\n"


__all__ = ["ExportError", "OmniCorpusExportConfig", "document_to_sample", "export_omnicorpus", "sample_document"]
