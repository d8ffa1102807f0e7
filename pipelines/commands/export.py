"""``braid export {bagel,hf,omnicorpus} SHARDS... --out DIR`` and ``braid push DIR --repo-id ID``.

Flags map one-to-one onto the exporter config fields (``schemas.export_*``); ``--config FILE`` gives the
same fields in YAML. Problems with the inputs or the output directory end with one sentence and exit
code 2, before anything is written.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from schemas.config import ConfigError, build_config

FORMATS = ("bagel", "hf", "omnicorpus")
MB = 1 << 20


FORMAT_HELP = {
    "bagel": "BAGEL's parquet/JSONL training formats (t2i_pretrain, unified_edit, vlm_sft)",
    "hf": "a Hugging Face dataset (Parquet) with a dataset card",
    "omnicorpus": "OmniCorpus-style documents: aligned texts/images lists",
}


def _defaults(fmt: str) -> dict:
    from dataclasses import fields

    cls, _ = _settings(argparse.Namespace(format=fmt, **dict.fromkeys(
        ("rows_per_group", "group_mb", "file_mb", "data_root", "dataset_name", "max_pixels", "no_caption_pairs",
         "license", "pretty_name", "images", "doc_format"))))
    return {f.name: f.default for f in fields(cls)}


def _common_flags(p: argparse.ArgumentParser, d: dict) -> None:
    p.add_argument("shards", nargs="*", metavar="SHARDS", help="shard files (.tar) or run directories")
    p.add_argument("--out", required=True, help="output directory (new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out (default: off)")
    p.add_argument("--config", help="YAML file of this exporter's settings (flags override it; default: none)")
    p.add_argument("--rows-per-group", type=int, help=f"rows per Parquet row group (default: {d['rows_per_group']})")
    p.add_argument("--group-mb", type=int,
                   help=f"most image MiB per Parquet row group (default: {d['group_bytes'] // MB})")
    p.add_argument("--file-mb", type=int, help=f"most image MiB per Parquet file (default: {d['file_bytes'] // MB})")
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log progress")


def _format_flags(p: argparse.ArgumentParser, fmt: str, hidden: bool) -> None:
    """The flags of one format; ``hidden`` ones are still parsed (to name them in a clear error) but not listed."""
    def h(text: str) -> str:
        return argparse.SUPPRESS if hidden else text

    if fmt == "bagel":
        p.add_argument("--data-root", help=h("where --out will be when BAGEL trains (parquet_info keys and "
                                             "dataset_info paths are built from it; default: --out's absolute path)"))
        p.add_argument("--dataset-name", help=h("prefix of the registered dataset names (default: braid)"))
        p.add_argument("--max-pixels", type=int, help=h("downscale and re-encode images with more pixels "
                                                        "(default: 20000000)"))
        p.add_argument("--no-caption-pairs", action="store_true",
                       help=h("do not also export caption-first images of interleaved samples as T2I pairs "
                              "(default: they are exported)"))
    elif fmt == "hf":
        p.add_argument("--license", help=h("the card's licence id (default: from the sources, 'other' when mixed)"))
        p.add_argument("--pretty-name", help=h("the card's title (default: none)"))
    else:
        p.add_argument("--images", choices=("embed", "files"),
                       help=h("embed image bytes or write image files beside (default: embed)"))
        p.add_argument("--doc-format", choices=("parquet", "jsonl"),
                       help=h("document container; jsonl needs --images files (default: parquet)"))


def configure_export(parser: argparse.ArgumentParser) -> None:
    """One sub-command per format, so ``braid export hf --help`` lists only the flags hf takes."""
    sub = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    for fmt in FORMATS:
        p = sub.add_parser(fmt, help=FORMAT_HELP[fmt], description=f"braid export {fmt}: {FORMAT_HELP[fmt]}")
        _common_flags(p, _defaults(fmt))
        for other in FORMATS:
            _format_flags(p, other, hidden=other != fmt)


def _settings(args) -> tuple[type, dict]:
    from pipelines.export.bagel import BagelExportConfig
    from pipelines.export.hf import HFExportConfig
    from pipelines.export.omnicorpus import OmniCorpusExportConfig

    common = {"rows_per_group": args.rows_per_group,
              "group_bytes": args.group_mb * MB if args.group_mb else None,
              "file_bytes": args.file_mb * MB if args.file_mb else None}
    if args.format == "bagel":
        return BagelExportConfig, {**common, "data_root": args.data_root, "dataset_name": args.dataset_name,
                                   "max_pixels": args.max_pixels,
                                   "caption_pairs": False if args.no_caption_pairs else None}
    if args.format == "hf":
        return HFExportConfig, {**common, "license": args.license, "pretty_name": args.pretty_name}
    return OmniCorpusExportConfig, {**common, "images": args.images, "format": args.doc_format}


def _foreign_flags(args) -> list[str]:
    own = {"bagel": ("data_root", "dataset_name", "max_pixels", "no_caption_pairs"),
           "hf": ("license", "pretty_name"), "omnicorpus": ("images", "doc_format")}
    return [f"--{name.replace('_', '-')}" for fmt, names in own.items() if fmt != args.format
            for name in names if getattr(args, name) not in (None, False)]


def run_export(args) -> int:
    from pipelines.export.common import ExportError

    foreign = _foreign_flags(args)
    if foreign:
        raise ConfigError(f"{', '.join(foreign)} cannot be used with 'braid export {args.format}'")
    if not args.shards:
        raise ConfigError("no shards given: name shard files (.tar) or run directories after the format")
    cls, overrides = _settings(args)
    cfg = build_config(cls, args.config, overrides)
    try:
        if args.format == "bagel":
            from pipelines.export.bagel import export_bagel

            rep = export_bagel(args.shards, args.out, cfg, overwrite=args.overwrite)
        elif args.format == "hf":
            from pipelines.export.hf import export_hf

            rep = export_hf(args.shards, args.out, cfg, overwrite=args.overwrite)
        else:
            from pipelines.export.omnicorpus import export_omnicorpus

            rep = export_omnicorpus(args.shards, args.out, cfg, overwrite=args.overwrite)
    except ExportError as e:
        print(f"braid export: {e}", file=sys.stderr)
        return 2
    _print_report(args.format, Path(args.out).absolute(), rep)
    return 0


def _print_report(fmt: str, out: Path, rep: dict) -> None:
    print(f"exported {rep['samples_read']} samples from {len(rep['shards'])} shards to {out}")
    for s in rep.get("skipped_shards", []):
        print(f"  skipped {s}")
    if fmt == "bagel":
        r = rep["rows"]
        print(f"  t2i_pretrain: {r['t2i']} rows, unified_edit: {r['interleave']} rows, vlm_sft: {r['vlm']} rows")
        if rep["data_dir_rule"]:
            print("  " + rep["data_dir_rule"])
        print(f"  register with {out / 'bagel_dataset_info.py'} and {out / 'bagel_data.yaml'}; see {out / 'README.md'}")
    elif fmt == "hf":
        print("  " + ", ".join(f"{k}: {n}" for k, n in rep["kinds"].items()))
        print(f"  load with datasets.load_dataset({str(out)!r}); upload with: braid push {out} --repo-id USER/NAME")
    else:
        print(f"  {rep['documents']} documents, {rep['images']} images; files: {', '.join(rep['files'][:3])}"
              + (" ..." if len(rep["files"]) > 3 else ""))
    dropped = rep.get("dropped_samples") or {}
    if dropped:
        print("  samples left out: " + ", ".join(f"{k} {v}" for k, v in dropped.items()) + " (see dropped.jsonl)")


# ---------------------------------------------------------------------------------------------- push


def configure_push(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="a directory written by 'braid export hf'")
    parser.add_argument("--repo-id", required=True, help="the dataset repository, USER/NAME or ORG/NAME")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", help="branch to upload to (default: main)")
    parser.add_argument("--message", default="Upload Braid export", help="commit message")


def run_push(args) -> int:
    import json

    d = Path(args.dir)
    marker = d / "export.json"
    if not marker.is_file():
        raise ConfigError(f"{d} is not a Braid export (no export.json); run 'braid export hf ... --out {d}' first")
    try:
        fmt = json.loads(marker.read_text()).get("format")
    except json.JSONDecodeError:
        fmt = None
    if fmt != "hf":
        raise ConfigError(f"{d} holds a '{fmt}' export; only 'braid export hf' output can be pushed to the Hub")
    if "/" not in args.repo_id or args.repo_id.count("/") > 1:
        raise ConfigError(f"--repo-id must look like USER/NAME, not {args.repo_id!r}")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        print("braid push: HF_HUB_OFFLINE is set, so nothing can be uploaded; run again with HF_HUB_OFFLINE=0 "
              "on a machine that can reach the Hub", file=sys.stderr)
        return 1
    try:
        from huggingface_hub import HfApi
    except ImportError:
        print("braid push: huggingface_hub is not installed (pip install huggingface_hub)", file=sys.stderr)
        return 1
    api = HfApi()
    try:
        api.create_repo(args.repo_id, repo_type="dataset", private=args.private, exist_ok=True)
        info = api.upload_folder(folder_path=str(d), repo_id=args.repo_id, repo_type="dataset",
                                 revision=args.revision, commit_message=args.message,
                                 ignore_patterns=["export.json", "dropped.jsonl"])
    except Exception as e:  # noqa: BLE001 - network boundary: every failure becomes one clear line
        print(f"braid push: could not upload to the Hugging Face Hub ({_why(e)}); check the network, "
              "HF_TOKEN / 'huggingface-cli login', and the repository id", file=sys.stderr)
        return 1
    print(f"pushed {d} to https://huggingface.co/datasets/{args.repo_id} ({getattr(info, 'oid', '') or 'done'})")
    return 0


def _why(e: Exception) -> str:
    seen, cur = [], e
    while cur is not None and len(seen) < 4:
        seen.append(f"{type(cur).__name__}: {str(cur).splitlines()[0] if str(cur) else ''}".rstrip(": "))
        cur = cur.__cause__ or cur.__context__
    return seen[-1] if len(seen) > 1 and "Error" in seen[-1] else seen[0]
