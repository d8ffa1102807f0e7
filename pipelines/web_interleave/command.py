"""``braid web INPUT... --out OUT_DIR``: web documents and HTML pages to filtered, caption-first shards.

Inputs: HTML files, folders (every .html/.htm and document file inside), http(s) page URLs, and files
of documents (OmniCorpus/OBELICS Parquet or JSONL, MMC4 JSONL/JSON). A file of documents becomes one
``split`` input with a part per document, so each document has its own outcome in the manifest.

Stages: read (extract, trim, UI-URL rule) -> topic -> fetch (+ size, aspect) -> images (clarity,
duplicates, OCR) -> caption (captions, summaries, optional topic review) -> assemble (relevance, count).
"""

from __future__ import annotations

import argparse
import json
import sys

from pipelines.commands.job_flags import add_job_flags, check_captioner, job_overrides
from pipelines.core.executor import run_pipeline
from pipelines.web_interleave import pipeline as P
from pipelines.web_interleave.config import WebConfig
from schemas.config import ConfigError, build_config

FLAGS = {**{k.replace("-", "_"): v[0] for k, v in P.FLAGS.items()}, "caption_batch_size": "caption.batch_size"}


def check_config(cfg: WebConfig) -> None:
    check_captioner(cfg.captioner)
    P.check_config(cfg)


def run_web_job(inputs: list[str], cfg: WebConfig) -> dict:
    check_config(cfg)
    records = P.list_inputs(inputs, cfg)
    if not records:
        raise ConfigError("no inputs: give HTML files, folders, page URLs or files of documents")
    return run_pipeline(P.build_stages(cfg), records, cfg.run, P.NAME, cfg)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="HTML files, folders, page URLs, JSONL/Parquet files")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--config", help="YAML file of WebConfig settings")
    parser.add_argument("--preset", choices=("tiny",), help="start from a preset")
    add_job_flags(parser, "filters.min_images=2")
    parser.add_argument("--allow-private-net", action="store_true", default=None,
                        help="allow fetching from private, loopback and link-local addresses")
    parser.add_argument("--min-images", type=int, help="images a document must keep")
    parser.add_argument("--max-images", type=int, help="images a document may keep")
    parser.add_argument("--caption-batch-size", type=int, help="documents per captioner call")


def config_from_args(args) -> WebConfig:
    overrides = job_overrides(args, FLAGS)
    return build_config(WebConfig, args.config, overrides, preset=args.preset)


def run(args) -> int:
    cfg = config_from_args(args)
    summary = run_web_job(args.inputs, cfg)
    print(json.dumps({k: summary[k] for k in ("inputs", "written", "filtered", "failed", "samples_written",
                                              "by_reason", "by_error_kind") if k in summary}, indent=1))
    return 0


if __name__ == "__main__":
    from pipelines.commands.cli import main

    sys.exit(main(["web", *sys.argv[1:]]))
