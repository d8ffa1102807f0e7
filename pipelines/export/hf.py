"""Export shards as a Hugging Face dataset: Parquet files whose image columns ``datasets`` decodes, and a
dataset card (README.md) with the YAML header ``datasets`` reads.

Layout: ``data/<kind>/train-NNNNN-of-MMMMM.parquet`` (one config per kind, plus ``all``), ``README.md``,
``export.json``. One row per sample:

| column          | feature            | meaning                                                          |
|-----------------|--------------------|------------------------------------------------------------------|
| key             | string             | the Braid sample key                                             |
| kind            | string             | video, web, reasoning_t2i, ...                                   |
| texts           | sequence of string | one slot per segment, in order; null where the segment is an image |
| images          | sequence of image  | one slot per segment; null where the segment is text            |
| roles           | sequence of string | each segment's role (change, caption, body, frame, target, ...)  |
| source_uri      | string             | where the sample came from                                       |
| licence         | string             | the source's licence where known                                 |
| captioner_model | string             | the model that wrote the generated texts, where any              |
| sample_json     | string             | the sample's full JSON member (loss flags, image roles, provenance) |

Image cells are ``{"bytes", "path"}`` structs; the Parquet schema carries the ``huggingface`` features
metadata, so ``datasets.load_dataset("parquet", ...)`` decodes them as images too.
"""

from __future__ import annotations

import json
import os
import re
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
    run_summaries,
    write_marker,
)
from schemas.sample import ImageSegment, Sample

FEATURES = [  # (name, YAML form, datasets JSON form)
    ("key", ("dtype", "string"), {"dtype": "string", "_type": "Value"}),
    ("kind", ("dtype", "string"), {"dtype": "string", "_type": "Value"}),
    ("texts", ("sequence", "string"), {"feature": {"dtype": "string", "_type": "Value"}, "_type": "Sequence"}),
    ("images", ("sequence", "image"), {"feature": {"_type": "Image"}, "_type": "Sequence"}),
    ("roles", ("sequence", "string"), {"feature": {"dtype": "string", "_type": "Value"}, "_type": "Sequence"}),
    ("source_uri", ("dtype", "string"), {"dtype": "string", "_type": "Value"}),
    ("licence", ("dtype", "string"), {"dtype": "string", "_type": "Value"}),
    ("captioner_model", ("dtype", "string"), {"dtype": "string", "_type": "Value"}),
    ("sample_json", ("dtype", "string"), {"dtype": "string", "_type": "Value"}),
]

_LICENCES = {"ccby4.0": "cc-by-4.0", "ccbysa4.0": "cc-by-sa-4.0", "ccby3.0": "cc-by-3.0", "cc01.0": "cc0-1.0",
             "cc0": "cc0-1.0", "ccbync4.0": "cc-by-nc-4.0", "apache2.0": "apache-2.0", "mit": "mit",
             "bsd3clause": "bsd-3-clause", "publicdomain": "cc0-1.0", "odcby": "odc-by"}


@dataclass(frozen=True)
class HFExportConfig:
    """Settings of ``braid export hf``.

    file_bytes: most image bytes per Parquet file (files split at row-group boundaries).
    rows_per_group: rows per Parquet row group (about 100 keeps the Hub's viewer fast on image rows).
    group_bytes: most image bytes per row group.
    license: the card's licence id (for example ``cc-by-4.0``); default: derived from the samples' sources,
        ``other`` when they differ or are unknown.
    pretty_name: the card's title.
    """

    file_bytes: int = 500 << 20
    rows_per_group: int = 100
    group_bytes: int = 128 << 20
    license: str | None = None
    pretty_name: str = "Braid interleaved image-text data"

    def __post_init__(self):
        if min(self.file_bytes, self.rows_per_group, self.group_bytes) < 1:
            raise ValueError("file_bytes, rows_per_group and group_bytes must be positive")
        if self.license is not None and not re.fullmatch(r"[a-z0-9][a-z0-9.\-]*", self.license):
            raise ValueError(f"license must be a Hub licence id such as cc-by-4.0, not {self.license!r}")

    @classmethod
    def tiny(cls) -> HFExportConfig:
        return cls(file_bytes=40_000, rows_per_group=2, group_bytes=20_000)


def arrow_schema():
    import pyarrow as pa

    img = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    types = {"texts": pa.list_(pa.string()), "images": pa.list_(img), "roles": pa.list_(pa.string())}
    meta = {"huggingface": json.dumps({"info": {"features": {n: j for n, _, j in FEATURES}}})}
    return pa.schema([(n, types.get(n, pa.string())) for n, _, _ in FEATURES], metadata=meta)


def sample_row(sample: Sample) -> dict:
    texts, images, roles = [], [], []
    n = 0
    for seg in sample.segments:
        roles.append(seg.role)
        if isinstance(seg, ImageSegment):
            texts.append(None)
            images.append({"bytes": seg.data, "path": f"{sample.key}.{n:03d}.{seg.ext}"})
            n += 1
        else:
            texts.append(seg.text)
            images.append(None)
    return {"key": sample.key, "kind": sample.kind, "texts": texts, "images": images, "roles": roles,
            "source_uri": sample.source.uri, "licence": sample.source.licence,
            "captioner_model": sample.captioner.model if sample.captioner else None,
            "sample_json": json.dumps(sample.to_json(), ensure_ascii=False, sort_keys=True)}


def hub_licence(licences: Counter) -> str:
    ids = {_LICENCES.get(re.sub(r"[\s_\-]", "", (lic or "").lower())) for lic in licences}
    return ids.pop() if len(ids) == 1 and None not in ids else "other"


def export_hf(shards: list[str | Path], out_dir: str | Path, cfg: HFExportConfig = HFExportConfig(),
              overwrite: bool = False) -> dict:
    """Export the samples of ``shards`` into ``out_dir`` as a Hub-ready dataset; returns the report."""
    return run_staged(shards, out_dir, overwrite, lambda found, staged: _export(found.shards, found.skipped, staged.path, cfg))


def _export(shards: list[Path], skipped: list[str], tmp: Path, cfg: HFExportConfig) -> dict:
    schema = arrow_schema()
    writers: dict[str, ParquetFiles] = {}
    drops = Drops()
    kinds: Counter = Counter()
    nbytes: Counter = Counter()  # for the card's split sizes
    licences: Counter = Counter()
    n_read = 0
    for shard, sample in iter_samples(shards, drops):
        n_read += 1
        if sample.kind not in writers:
            (tmp / "data" / sample.kind).mkdir(parents=True)
            writers[sample.kind] = ParquetFiles(tmp / "data" / sample.kind, "train", schema, cfg.rows_per_group,
                                                cfg.group_bytes, cfg.file_bytes,
                                                size_of=lambda r: sum(len(i["bytes"]) for i in r["images"] if i))
        row = sample_row(sample)
        writers[sample.kind].add(row)
        kinds[sample.kind] += 1
        nbytes[sample.kind] += sum(len(i["bytes"]) for i in row["images"] if i) + len(row["sample_json"].encode())
        licences[sample.source.licence or "unknown"] += 1
    check_any_read(n_read, drops)
    files: dict[str, list[str]] = {}
    for kind, w in writers.items():
        parts = w.close()
        files[kind] = []
        for i, f in enumerate(parts):
            name = f"train-{i:05d}-of-{len(parts):05d}.parquet"
            os.replace(tmp / "data" / kind / f["name"], tmp / "data" / kind / name)
            files[kind].append(f"data/{kind}/{name}")
    report = {"shards": [str(s) for s in shards], "skipped_shards": skipped, "samples_read": n_read,
              "rows": sum(kinds.values()),
              "kinds": dict(sorted(kinds.items())), "bytes": dict(sorted(nbytes.items())), "licences": dict(licences.most_common()),
              "dropped_samples": drops.by_reason(), "files": files, "config": asdict(cfg)}
    runs = run_summaries(shards)
    (tmp / "README.md").write_text(dataset_card(report, runs, cfg), encoding="utf-8")
    if (cfg.license or hub_licence(licences)) == "other":
        (tmp / "LICENSES.md").write_text(
            "# Licences\n\nThe samples come from sources under different or unknown licences; each row's `licence` "
            "column gives its own.\n\n" + "".join(f"- {k}: {v} samples\n" for k, v in licences.most_common()),
            encoding="utf-8")
    if drops.samples:
        with open(tmp / "dropped.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in drops.samples)
    write_marker(tmp, "hf", report)
    return report


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):
        if n < limit:
            return name
    return "100M<n<1B"


def dataset_card(rep: dict, runs: list[dict], cfg: HFExportConfig) -> str:
    """README.md: the YAML header ``datasets`` and the Hub read, then provenance and counts."""
    q = json.dumps  # a JSON string is a valid YAML double-quoted scalar
    licence = cfg.license or hub_licence(Counter(rep["licences"]))
    y = ["---", f"license: {licence}"]
    if licence == "other":
        y += ["license_name: mixed", "license_link: LICENSES.md"]
    y += [f"pretty_name: {q(cfg.pretty_name)}", "tags:", "- interleaved", "- image-text", "- braid",
          "task_categories:", "- text-to-image", "- image-to-text", "size_categories:",
          f"- {_size_category(rep['rows'])}", "configs:"]
    configs = [("all", "data/*/train-*.parquet", rep["rows"], sum(rep["bytes"].values()))]
    configs += [(k, f"data/{k}/train-*.parquet", n, rep["bytes"][k]) for k, n in rep["kinds"].items()]
    for i, (name, path, _, _) in enumerate(configs):
        y += [f"- config_name: {name}"] + (["  default: true"] if i == 0 else [])
        y += ["  data_files:", "  - split: train", f"    path: {path}"]
    y.append("dataset_info:")
    for name, _, n, size in configs:
        y += [f"- config_name: {name}", "  features:"]
        for fname, (k, v), _ in FEATURES:
            y += [f"  - name: {fname}", f"    {k}: {v}"]
        y += ["  splits:", "  - name: train", f"    num_bytes: {size}", f"    num_examples: {n}"]
    y.append("---")

    body = ["", f"# {cfg.pretty_name}", "",
            ("Interleaved image-text samples built with Braid: video clips with change captions between frames, "
            "caption-first web documents, and reasoning-augmented samples (query, `<think>` trace, image)."), "",
            "## Loading", "", "```python", "from datasets import load_dataset",
            'ds = load_dataset("PATH_OR_REPO_ID", split="train")          # every kind',
            'video = load_dataset("PATH_OR_REPO_ID", "video", split="train")', "```", "",
            ("Each row is one sample. `texts`, `images` and `roles` have one slot per segment, in order; a text "
            "segment leaves its `images` slot null and an image segment its `texts` slot. `sample_json` holds the "
            "full sample (per-segment loss flags, whether each image is an understanding input or a generation "
            "target, provenance, captioner prompt ids)."), "",
            "## Counts", "", "| kind | samples |", "|---|---|"]
    body += [f"| {k} | {n} |" for k, n in rep["kinds"].items()] + [f"| total | {rep['rows']} |", ""]
    body += ["Licences of the sources: " + ", ".join(f"{k} ({v})" for k, v in rep["licences"].items()) + ".", ""]
    if rep["dropped_samples"]:
        body += ["Samples that could not be read and are not included: "
                 + ", ".join(f"{k} ({v})" for k, v in rep["dropped_samples"].items()) + " (see `dropped.jsonl`).", ""]
    body += ["## Provenance", "", f"Exported from {len(rep['shards'])} shards:", ""]
    body += [f"- `{Path(s).name}` ({Path(s).parent})" for s in rep["shards"]] + [""]
    for run in runs:
        body += [f"### Run `{run['dir']}`", ""]
        s = run.get("summary")
        if s:
            body += [(f"Pipeline `{s.get('pipeline', '?')}`: {s.get('inputs', '?')} inputs, {s.get('written', '?')} "
                     f"written, {s.get('filtered', '?')} filtered, {s.get('failed', '?')} failed."), ""]
            if s.get("by_reason"):
                body += ["| filter reason | inputs |", "|---|---|"]
                body += [f"| {r} | {n} |" for r, n in sorted(s["by_reason"].items(), key=lambda x: -x[1])] + [""]
            if s.get("by_error_kind"):
                body += ["| failure | inputs |", "|---|---|"]
                body += [f"| {r} | {n} |" for r, n in sorted(s["by_error_kind"].items(), key=lambda x: -x[1])] + [""]
        else:
            body += ["No summary.json beside these shards.", ""]
        cfg_run = (run.get("last_run") or {}).get("config")
        if cfg_run is not None:
            body += ["Pipeline configuration (last run):", "", "```json", json.dumps(cfg_run, indent=1, default=str),
                     "```", ""]
    if rep["skipped_shards"]:
        body += ["Incomplete shards not exported:", ""] + [f"- {s}" for s in rep["skipped_shards"]] + [""]
    return "\n".join(y + body)


__all__ = ["FEATURES", "ExportError", "HFExportConfig", "arrow_schema", "dataset_card", "export_hf", "sample_row"]
