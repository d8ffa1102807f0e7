"""Export shards to the three data formats BAGEL's own training code reads.

Output layout (``ROOT`` is where the directory lives at training time, ``--data-root``):

| path                               | BAGEL group     | what                                                         |
|------------------------------------|-----------------|--------------------------------------------------------------|
| ``t2i_pretrain/part-NNNNN.parquet`` | ``t2i_pretrain`` | ``image`` (encoded bytes), ``captions`` (JSON string of a dict) |
| ``unified_edit/part-NNNNN.parquet`` | ``unified_edit`` | ``image_list`` (N encoded images), ``instruction_list`` (N-1 lists of alternatives) |
| ``unified_edit_parquet_info.json``  | ``unified_edit`` | ``{os.path.join(ROOT/unified_edit, file): {"num_row_groups": n}}`` |
| ``vlm_sft/braid_vlm.jsonl`` + ``vlm_sft/images/`` | ``vlm_sft`` | LLaVA rows: ``image`` (paths relative to ``vlm_sft``), ``conversations`` |
| ``bagel_dataset_info.py`` / ``.json``, ``bagel_data.yaml`` | - | the registration entries and the YAML stanza |
| ``README.md``, ``export.json``, ``dropped.jsonl`` | - | where every sample went, what was left out and why |

Every Parquet row carries ``braid_key`` (and ``image_index`` for T2I rows); every JSONL row carries
``id`` = ``braid_key``, so each exported row maps back to its source sample.

Routing (by structure, so new kinds route without code changes):
- no image is a generation target -> ``vlm_sft`` (understanding);
- exactly one image, a generation target -> ``t2i_pretrain``, captions from the texts before it;
- two or more images -> ``unified_edit``, one instruction list per image transition; in addition each
  generation-target image directly preceded by a ``caption`` text (caption-first web images) becomes a
  ``t2i_pretrain`` row.
"""

from __future__ import annotations

import itertools
import json
import posixpath
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipelines.export.common import (
    Drops,
    ExportError,
    ParquetFiles,
    check_any_read,
    fit_image,
    iter_samples,
    run_staged,
    write_json,
    write_marker,
)
from schemas.sample import ImageSegment, Sample, TextSegment

SHORT_ROLES = ("caption", "change", "instruction", "query")
T2I_DIR, EDIT_DIR, VLM_DIR = "t2i_pretrain", "unified_edit", "vlm_sft"
PARQUET_INFO = "unified_edit_parquet_info.json"


@dataclass(frozen=True)
class BagelExportConfig:
    """Settings of ``braid export bagel``.

    data_root: the path this output directory will have where BAGEL trains (local path or
        ``hdfs://``); ``parquet_info`` keys and ``dataset_info`` paths are built from it. Default: the
        output directory's absolute path here.
    dataset_name: prefix of the registered dataset names (``<name>_t2i``, ``<name>_interleave``, ``<name>_vlm``).
    rows_per_group: most rows per Parquet row group (BAGEL reads one row group at a time into memory).
    group_bytes: most image bytes per row group.
    file_bytes: most image bytes per Parquet file.
    max_pixels: images with more pixels are downscaled and re-encoded (BAGEL's T2I loader refuses
        images past PIL's 20 MP guard); all others are copied byte for byte.
    caption_pairs: also export each caption-first image of an interleaved sample as a T2I pair.
    """

    data_root: str | None = None
    dataset_name: str = "braid"
    rows_per_group: int = 64
    group_bytes: int = 64 << 20
    file_bytes: int = 512 << 20
    max_pixels: int = 20_000_000
    caption_pairs: bool = True

    def __post_init__(self):
        if min(self.rows_per_group, self.group_bytes, self.file_bytes, self.max_pixels) < 1:
            raise ValueError("rows_per_group, group_bytes, file_bytes and max_pixels must be positive")
        if not self.dataset_name.replace("_", "").isalnum():
            raise ValueError(f"dataset_name must be letters, digits and '_', not {self.dataset_name!r}")

    @classmethod
    def tiny(cls) -> BagelExportConfig:
        return cls(rows_per_group=2, group_bytes=1 << 20, file_bytes=4 << 20)


# ---------------------------------------------------------------------------------------------- planning


@dataclass
class Plan:
    """Where one sample goes. ``route``: t2i, interleave, vlm or drop (with ``reason``)."""

    route: str
    reason: str = ""
    captions: dict = field(default_factory=dict)  # t2i route
    instructions: list[list[str]] = field(default_factory=list)  # interleave route
    pairs: list[tuple[int, dict]] = field(default_factory=list)  # caption-first (image index, captions)
    conversations: list[dict] = field(default_factory=list)  # vlm route
    parts_dropped: Counter = field(default_factory=Counter)


def _clean(texts: list[TextSegment]) -> list[TextSegment]:
    return [t for t in texts if t.role != "system" and t.text.strip()]


def alternatives(texts: list[TextSegment]) -> list[str]:
    """Alternative strings for the text between two images: all of it (system prompts aside), then the
    caption/change/instruction/query texts alone when that differs."""
    texts = _clean(texts)
    full = " ".join(t.text.strip() for t in texts)
    short = " ".join(t.text.strip() for t in texts if t.role in SHORT_ROLES)
    return [full] + ([short] if short and short != full else []) if full else []


def _drop_outside(plan: Plan, texts: list[TextSegment], where: str) -> None:
    for t in texts:
        plan.parts_dropped["system_text" if t.role == "system" else f"{where}_text:{t.role}"] += 1


def plan_sample(sample: Sample, caption_pairs: bool = True) -> Plan:
    segs = list(sample.segments)
    pos = [i for i, s in enumerate(segs) if isinstance(s, ImageSegment)]
    images = [segs[i] for i in pos]
    if not any(im.generation for im in images):
        return _plan_vlm(segs)
    if len(images) == 1:
        before = [s for s in segs[: pos[0]] if isinstance(s, TextSegment)]
        after = [s for s in segs[pos[0] + 1 :] if isinstance(s, TextSegment)]
        alts = alternatives(before)
        if not alts:
            # an image-caption pair written image first: its caption still describes the image
            before, after = [t for t in after if t.role == "caption"], [t for t in after if t.role != "caption"]
            alts = alternatives(before)
        if not alts:
            return Plan("drop", "no_text_before_image")
        plan = Plan("t2i", captions=dict(zip(("full", "short"), alts)))
        plan.parts_dropped["text_loss_not_carried"] += sum(1 for t in _clean(before) if t.loss)
        _drop_outside(plan, after, "trailing")
        plan.parts_dropped["system_text"] += sum(1 for t in before if t.role == "system")
        return plan
    plan = Plan("interleave")
    for a, b in itertools.pairwise(pos):
        between = [s for s in segs[a + 1 : b] if isinstance(s, TextSegment)]
        alts = alternatives(between)
        if not alts:
            return Plan("drop", "transition_without_text")
        plan.instructions.append(alts)
        plan.parts_dropped["text_loss_not_carried"] += sum(1 for t in _clean(between) if t.loss)
        plan.parts_dropped["system_text"] += sum(1 for t in between if t.role == "system")
    _drop_outside(plan, [s for s in segs[: pos[0]] if isinstance(s, TextSegment)], "leading")
    _drop_outside(plan, [s for s in segs[pos[-1] + 1 :] if isinstance(s, TextSegment)], "trailing")
    if caption_pairs:
        for k, i in enumerate(pos):
            prev = segs[i - 1] if i > 0 else None
            if images[k].generation and isinstance(prev, TextSegment) and prev.role == "caption" and prev.text.strip():
                caps = {"caption": prev.text.strip()}
                alt = images[k].provenance.get("alt")
                if isinstance(alt, str) and alt.strip() and alt.strip() != caps["caption"]:
                    caps["alt"] = alt.strip()
                plan.pairs.append((k, caps))
    return plan


def _plan_vlm(segs: list) -> Plan:
    """LLaVA turns: images and texts without loss go to ``human``, texts with loss to ``gpt``."""
    turns: list[tuple[str, list[str]]] = []
    for s in segs:
        if isinstance(s, ImageSegment):
            role, part = "human", "<image>"
        elif s.text.strip():
            role, part = ("gpt" if s.loss else "human"), s.text.strip()
        else:
            continue
        if turns and turns[-1][0] == role:
            turns[-1][1].append(part)
        else:
            turns.append((role, [part]))
    if not any(role == "gpt" for role, _ in turns):
        return Plan("drop", "no_loss_text")
    return Plan("vlm", conversations=[{"from": r, "value": "\n".join(parts)} for r, parts in turns])


# ---------------------------------------------------------------------------------------------- writing


def _schemas():
    import pyarrow as pa

    t2i = pa.schema([("image", pa.binary()), ("captions", pa.string()), ("braid_key", pa.string()),
                     ("image_index", pa.int32()), ("kind", pa.string())])
    edit = pa.schema([("image_list", pa.list_(pa.binary())), ("instruction_list", pa.list_(pa.list_(pa.string()))),
                      ("braid_key", pa.string()), ("kind", pa.string())])
    return t2i, edit


def export_bagel(shards: list[str | Path], out_dir: str | Path, cfg: BagelExportConfig = BagelExportConfig(),
                 overwrite: bool = False) -> dict:
    """Export the samples of ``shards`` into ``out_dir``; returns the report (also in ``export.json``)."""
    return run_staged(shards, out_dir, overwrite, lambda found, staged: _export(found.shards, found.skipped, staged.path, staged.final, cfg))


def _export(shards: list[Path], skipped: list[str], tmp: Path, final: Path, cfg: BagelExportConfig) -> dict:
    root = cfg.data_root or str(final)
    t2i_schema, edit_schema = _schemas()
    (tmp / T2I_DIR).mkdir()
    (tmp / EDIT_DIR).mkdir()
    t2i = ParquetFiles(tmp / T2I_DIR, "part", t2i_schema, cfg.rows_per_group, cfg.group_bytes, cfg.file_bytes,
                       size_of=lambda r: len(r["image"]))
    edit = ParquetFiles(tmp / EDIT_DIR, "part", edit_schema, cfg.rows_per_group, cfg.group_bytes, cfg.file_bytes,
                        size_of=lambda r: sum(map(len, r["image_list"])))
    vlm_rows: list[dict] = []
    drops = Drops()
    routes: Counter = Counter()  # (kind, route)
    n_read = reencoded = 0

    for shard, sample in iter_samples(shards, drops):
        n_read += 1
        plan = plan_sample(sample, cfg.caption_pairs)
        if plan.route == "drop":
            drops.sample(sample.key, shard.name, plan.reason)
            routes[(sample.kind, "dropped")] += 1
            continue
        images = []
        for im in sample.images:
            fitted = fit_image(im.data, im.ext, cfg.max_pixels)
            if fitted is None:
                break
            data, ext, again = fitted
            reencoded += again
            images.append((data, ext))
        if len(images) != len(sample.images):
            drops.sample(sample.key, shard.name, "image_unreadable", f"image {len(images)} does not decode")
            routes[(sample.kind, "dropped")] += 1
            continue
        drops.parts.update(plan.parts_dropped)
        if plan.route == "t2i":
            t2i.add({"image": images[0][0], "captions": json.dumps(plan.captions, ensure_ascii=False),
                     "braid_key": sample.key, "image_index": 0, "kind": sample.kind})
        elif plan.route == "interleave":
            edit.add({"image_list": [d for d, _ in images], "instruction_list": plan.instructions,
                      "braid_key": sample.key, "kind": sample.kind})
            for k, caps in plan.pairs:
                t2i.add({"image": images[k][0], "captions": json.dumps(caps, ensure_ascii=False),
                         "braid_key": sample.key, "image_index": k, "kind": sample.kind})
            routes[(sample.kind, "caption_pairs")] += len(plan.pairs)
        else:
            rel = []
            for k, (data, ext) in enumerate(images):
                p = posixpath.join("images", shard.name.removesuffix(".tar"), f"{sample.key}.{k:03d}.{ext}")
                (tmp / VLM_DIR / p).parent.mkdir(parents=True, exist_ok=True)
                (tmp / VLM_DIR / p).write_bytes(data)
                rel.append(p)
            row = {"id": sample.key, "braid_key": sample.key, "kind": sample.kind}
            if rel:
                row["image"] = rel[0] if len(rel) == 1 else rel
            row["conversations"] = plan.conversations
            vlm_rows.append(row)
        routes[(sample.kind, plan.route)] += 1
    check_any_read(n_read, drops)

    t2i_files, edit_files = t2i.close(), edit.close()
    name = cfg.dataset_name
    jsonl_name = f"{name}_vlm.jsonl"
    if vlm_rows:
        (tmp / VLM_DIR).mkdir(exist_ok=True)
        with open(tmp / VLM_DIR / jsonl_name, "w", encoding="utf-8") as f:
            for row in vlm_rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    for sub, files in ((T2I_DIR, t2i_files), (EDIT_DIR, edit_files)):
        if not files:
            (tmp / sub).rmdir()
    edit_dir = posixpath.join(root, EDIT_DIR)
    parquet_info = {posixpath.join(edit_dir, f["name"]): {"num_row_groups": f["num_row_groups"],
                                                         "num_rows": f["num_rows"]} for f in edit_files}
    if edit_files:
        write_json(tmp / PARQUET_INFO, parquet_info)
    info = _dataset_info(root, name, t2i_files, edit_files, len(vlm_rows), jsonl_name)
    write_json(tmp / "bagel_dataset_info.json", info)
    (tmp / "bagel_dataset_info.py").write_text(_dataset_info_py(info), encoding="utf-8")
    (tmp / "bagel_data.yaml").write_text(_yaml_stanza(info, t2i_files, edit_files, len(vlm_rows)), encoding="utf-8")
    with open(tmp / "dropped.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in drops.samples)
    report = {
        "data_root": root,
        "shards": [str(s) for s in shards],
        "skipped_shards": skipped,
        "samples_read": n_read,
        "routes": _nested(routes),
        "rows": {"t2i": sum(f["num_rows"] for f in t2i_files), "interleave": sum(f["num_rows"] for f in edit_files),
                 "vlm": len(vlm_rows)},
        "files": {"t2i": t2i_files, "interleave": edit_files},
        "dropped_samples": drops.by_reason(),
        "dropped_parts": {k: v for k, v in sorted(drops.parts.items()) if v},
        "images_reencoded": reencoded,
        "config": asdict(cfg),
        "data_dir_rule": _data_dir_rule(edit_dir) if edit_files else "",
    }
    write_marker(tmp, "bagel", report)
    (tmp / "README.md").write_text(_readme(report, info), encoding="utf-8")
    return report


def _nested(counter: Counter) -> dict:
    out: dict = {}
    for (kind, route), n in sorted(counter.items()):
        if n:
            out.setdefault(kind, {})[route] = n
    return out


def _data_dir_rule(edit_dir: str) -> str:
    return (f"BAGEL's unified_edit loader looks up each file as os.path.join(data_dir, file name) in "
            f"{PARQUET_INFO} and silently skips files it does not find, so data_dir must be given exactly as "
            f"'{edit_dir}' (the same string; no other spelling of the path). If the data lives elsewhere at "
            "training time, export again with --data-root set to that location.")


def _dataset_info(root: str, name: str, t2i_files, edit_files, n_vlm: int, jsonl_name: str) -> dict:
    info: dict = {}
    if t2i_files:
        info["t2i_pretrain"] = {f"{name}_t2i": {
            "data_dir": posixpath.join(root, T2I_DIR), "num_files": len(t2i_files),
            "num_total_samples": sum(f["num_rows"] for f in t2i_files)}}
    if edit_files:
        info["unified_edit"] = {f"{name}_interleave": {
            "data_dir": posixpath.join(root, EDIT_DIR), "num_files": len(edit_files),
            "num_total_samples": sum(f["num_rows"] for f in edit_files),
            "parquet_info_path": posixpath.join(root, PARQUET_INFO)}}
    if n_vlm:
        info["vlm_sft"] = {f"{name}_vlm": {
            "data_dir": posixpath.join(root, VLM_DIR), "jsonl_path": posixpath.join(root, VLM_DIR, jsonl_name),
            "num_total_samples": n_vlm}}
    return info


def _dataset_info_py(info: dict) -> str:
    lines = ["# Braid export: entries for DATASET_INFO in BAGEL's data/dataset_info.py.",
             "# Paste the update lines below the DATASET_INFO definition (they add to the existing groups).", ""]
    for group, entries in info.items():
        for ds, meta in entries.items():
            lines.append(f"DATASET_INFO.setdefault({group!r}, {{}})[{ds!r}] = {{")
            lines += [f"    {k!r}: {v!r}," for k, v in meta.items()]
            lines.append("}")
    return "\n".join(lines) + "\n"


def _yaml_stanza(info: dict, t2i_files, edit_files, n_vlm: int) -> str:
    """BAGEL's data config groups (same transforms as its example.yaml). Hand-written YAML: schemas/
    imports no YAML library."""
    out = ["# Braid export: groups for BAGEL's data config (--dataset_config_file).",
           "# num_used_data counts Parquet files for t2i_pretrain and unified_edit (BAGEL repeats files to reach it)",
           "# and JSONL rows for vlm_sft; give at least NUM_GPUS x num_workers units in all."]
    vae = ["  image_transform_args:", "    image_stride: 16", "    max_image_size: 1024", "    min_image_size: 512"]
    if t2i_files:
        out += ["t2i_pretrain:", "  dataset_names:", f"  - {next(iter(info['t2i_pretrain']))}", *vae,
                "  is_mandatory: true", "  num_used_data:", f"  - {len(t2i_files)}", "  weight: 1", ""]
    if edit_files:
        out += ["unified_edit:", "  dataset_names:", f"  - {next(iter(info['unified_edit']))}", *vae,
                "  vit_image_transform_args:", "    image_stride: 14", "    max_image_size: 518",
                "    min_image_size: 224", "  is_mandatory: false", "  num_used_data:", f"  - {len(edit_files)}",
                "  weight: 1", ""]
    if n_vlm:
        out += ["vlm_sft:", "  dataset_names:", f"  - {next(iter(info['vlm_sft']))}", "  image_transform_args:",
                "    image_stride: 14", "    max_image_size: 980", "    min_image_size: 378", "    max_pixels: 2007040",
                "  frame_sampler_args:", "    max_num_frames: 12", "    min_num_frames: 8", "  is_mandatory: true",
                "  shuffle_lines: true", "  shuffle_seed: 0", "  num_used_data:", f"  - {n_vlm}", "  weight: 1", ""]
    return "\n".join(out) + "\n"


PART_NOTES = {
    "leading": "text before the first image: the unified_edit format starts with an image, so it has no slot for it",
    "trailing": "text after the last image: no image follows it, so no transition can carry it",
    "system": "system prompts: BAGEL's loaders have no system-prompt slot, so captions and instructions leave them out",
    "text_loss_not_carried": "texts that carry loss in Braid (change captions, captions, body text, think traces) "
                             "became captions or instructions, which BAGEL's loaders read without loss",
}
SAMPLE_NOTES = {
    "no_text_before_image": "a single generation image with no text before it (nor a caption after it)",
    "transition_without_text": "two images with no text between them: the instruction list would need an empty entry",
    "no_loss_text": "an understanding sample without loss-bearing text: BAGEL's vlm_sft loader skips such rows",
    "image_unreadable": "an image does not decode",
    "invalid_sample": "the sample breaks the Braid schema",
    "unreadable_shard": "the rest of the shard could not be read",
}


def _readme(rep: dict, info: dict) -> str:
    lines = ["# Braid samples exported for BAGEL", "",
             (f"{rep['samples_read']} samples read from {len(rep['shards'])} shards; "
             f"{rep['rows']['t2i']} T2I rows, {rep['rows']['interleave']} interleaved rows, "
             f"{rep['rows']['vlm']} understanding rows. Data root at training time: `{rep['data_root']}`."), ""]
    if rep["data_dir_rule"]:
        lines += ["## data_dir", "", rep["data_dir_rule"], ""]
    lines += ["## Where the samples went", "", "| kind | route | samples |", "|---|---|---|"]
    for kind, routes in rep["routes"].items():
        lines += [f"| {kind} | {route} | {n} |" for route, n in routes.items()]
    lines += ["", ("Routes: `t2i` -> `t2i_pretrain/` (captions: `full` = every text before the image except system "
              "prompts, `short` = its caption/query texts only); `interleave` -> `unified_edit/` (one instruction "
              "list per image transition: the whole text between the two images, then its caption/change/"
              "instruction/query texts alone); `caption_pairs` -> extra `t2i_pretrain/` rows, one per caption-first "
              "image (`captions`: the caption, and the alt text where known); `vlm` -> `vlm_sft/` (LLaVA JSONL)."),
              "Every row carries `braid_key` (JSONL rows also `id`), the key of its source sample.", ""]
    lines += ["## What was left out", ""]
    if rep["dropped_samples"]:
        lines += ["Whole samples (listed one per line in `dropped.jsonl`):", ""]
        lines += [f"- {r}: {n} ({SAMPLE_NOTES.get(r, '')})" for r, n in sorted(rep["dropped_samples"].items())]
        lines.append("")
    if rep["dropped_parts"]:
        lines += ["Parts of exported samples:", ""]
        for part, n in sorted(rep["dropped_parts"].items()):
            if n:
                lines.append(f"- {part}: {n} ({PART_NOTES.get(part, PART_NOTES.get(part.split('_text')[0], ''))})")
        lines.append("")
    if not rep["dropped_samples"] and not rep["dropped_parts"]:
        lines += ["Nothing.", ""]
    if rep["skipped_shards"]:
        lines += ["Shards not read:", ""] + [f"- {s}" for s in rep["skipped_shards"]] + [""]
    lines += [(f"Images re-encoded (over {rep['config']['max_pixels']} pixels): {rep['images_reencoded']}; all "
              "others are the shard's bytes unchanged."), "",
              "## Training BAGEL on it", "",
              "1. Add the entries of `bagel_dataset_info.py` to `DATASET_INFO` in BAGEL's `data/dataset_info.py`.",
              ("2. Use the groups of `bagel_data.yaml` in the file given to `--dataset_config_file` "
              "(drop groups you do not train; add `--visual_gen False` for understanding only)."),
              "3. If the directory moves, export again with `--data-root NEW_PATH`, or rebuild the parquet_info:",
              "", "```python", "import json, os, pyarrow.parquet as pq",
              "d = 'NEW_PATH/unified_edit'",
              "info = {os.path.join(d, f): {'num_row_groups': pq.ParquetFile(os.path.join(d, f)).num_row_groups}",
              "        for f in os.listdir(d) if f.endswith('.parquet')}",
              f"json.dump(info, open('NEW_PATH/{PARQUET_INFO}', 'w'))", "```", "",
              "Entries written:", "", "```json", json.dumps(info, indent=1), "```", ""]
    return "\n".join(lines)


__all__ = ["BagelExportConfig", "ExportError", "Plan", "alternatives", "export_bagel", "plan_sample"]
