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

from schemas.config import ConfigError, build_config
from pipelines.core.executor import run_pipeline
from pipelines.net.fetch import Fetcher
from pipelines.commands.job_flags import add_job_flags, check_captioner, job_overrides
from pipelines.core.stage import Stage

from pipelines.web_interleave.config import WebConfig


def build_stages(cfg: WebConfig) -> list[Stage]:
    from pipelines.web_interleave.assemble import assemble_docs
    from pipelines.web_interleave.caption import caption_docs, make_caption_state
    from pipelines.web_interleave.stages import classify_topics, fetch_images, filter_images, make_image_state, read_docs
    from pipelines.web_interleave.topic import load_classifier

    bs = cfg.batch_size
    # set-up stages become Ray actors that hold their CPUs for the whole job; small shares keep the
    # five of them schedulable next to the tasks on a 2-core machine (the work itself is mostly I/O or batched)
    return [
        Stage("read", read_docs, cfg, setup=lambda c: Fetcher(c.fetch), num_cpus=0.2, batch_size=1),
        Stage("topic", classify_topics, cfg, setup=lambda c: load_classifier(c.topic.classifier), num_cpus=0.2,
              batch_size=bs * 4),
        Stage("fetch", fetch_images, cfg, setup=lambda c: Fetcher(c.fetch), num_cpus=0.2, batch_size=bs),
        Stage("images", filter_images, cfg, setup=make_image_state, num_cpus=0.2, batch_size=bs),
        Stage("caption", caption_docs, cfg, setup=make_caption_state, num_cpus=0.2,
              num_gpus=1.0 if cfg.captioner.device.startswith("cuda") else 0.0, batch_size=bs),
        Stage("assemble", assemble_docs, cfg, num_cpus=1.0, batch_size=bs),
    ]


def check_config(cfg: WebConfig) -> None:
    """Configuration problems in one sentence, before any work."""
    from pipelines.web_interleave.topic import load_classifier

    check_captioner(cfg.captioner)
    load_classifier(cfg.topic.classifier)
    Fetcher(cfg.fetch).close()  # checks that SVG rasterising can load


def run_web_job(inputs: list[str], cfg: WebConfig) -> dict:
    from pipelines.web_interleave.readers import expand_inputs

    check_config(cfg)
    records = expand_inputs(inputs)
    if not records:
        raise ConfigError("no inputs: give HTML files, folders, page URLs or files of documents")
    return run_pipeline(build_stages(cfg), records, cfg.run, "web", cfg)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="HTML files, folders, page URLs, JSONL/Parquet files")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--config", help="YAML file of WebConfig settings")
    parser.add_argument("--preset", choices=("tiny",), help="start from a preset")
    add_job_flags(parser, "filters.min_images=2")
    parser.add_argument("--allow-private-net", action="store_true", default=None,
                        help="allow fetching from private, loopback and link-local addresses")


def config_from_args(args) -> WebConfig:
    overrides = job_overrides(args, {"allow_private_net": "fetch.allow_private_net"})
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
