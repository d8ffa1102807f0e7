"""``braid web``: web documents and HTML pages -> read, topic, fetch, images, caption, assemble -> caption-first shards.

Inputs: HTML files, folders (every .html/.htm and document file inside), http(s) page URLs, list files, and
files of documents (OmniCorpus/OBELICS Parquet or JSONL, MMC4 JSONL/JSON). A file of documents becomes one
``split`` input with a part per document, so each document has its own outcome in the manifest.
"""

from __future__ import annotations

from pipelines.core.stage import Stage
from pipelines.net.fetch import Fetcher
from pipelines.web_interleave.config import WebConfig

NAME = "web"
DESCRIPTION = "web documents and HTML pages -> caption-first shards"
CONFIG = WebConfig
INPUT_HELP = ("HTML files, folders, http(s) page URLs, list files, and files of documents (OmniCorpus/OBELICS "
              "Parquet or JSONL, MMC4 JSONL/JSON)")
FLAGS = {
    "allow-private-net": ("fetch.allow_private_net", bool,
                          "allow fetching from private, loopback and link-local addresses"),
    "min-images": ("filters.min_images", int, "images a document must keep"),
    "max-images": ("filters.max_images", int, "images a document may keep"),
}


def list_inputs(specs: list[str], cfg: WebConfig) -> list[dict]:
    from functools import partial

    from pipelines.net.download import download_bytes
    from pipelines.web_interleave.readers import expand_inputs

    return expand_inputs(specs, read_remote=partial(download_bytes, fetch_cfg=cfg.fetch))


def _fetcher(cfg: WebConfig) -> Fetcher:
    return Fetcher(cfg.fetch)


def _classifier(cfg: WebConfig):
    from pipelines.web_interleave.topic import load_classifier

    return load_classifier(cfg.topic.classifier)


def build_stages(cfg: WebConfig) -> list[Stage]:
    from pipelines.web_interleave.assemble import assemble_docs
    from pipelines.web_interleave.caption import caption_docs, open_captioner
    from pipelines.web_interleave.classify import classify_topics
    from pipelines.web_interleave.fetch import fetch_images
    from pipelines.web_interleave.images import filter_images, make_image_state
    from pipelines.web_interleave.read import read_docs

    bs, cap = cfg.batch_size, cfg.caption
    # set-up stages become Ray actors that hold their CPUs for the whole job; small shares keep them
    # schedulable next to the tasks on a small machine (the work itself is mostly I/O or batched)
    return [
        Stage("read", read_docs, cfg, setup=_fetcher, num_cpus=0.2, batch_size=1),
        Stage("topic", classify_topics, cfg, setup=_classifier, num_cpus=0.2, batch_size=bs * 4),
        Stage("fetch", fetch_images, cfg, setup=_fetcher, num_cpus=0.2, batch_size=bs),
        Stage("images", filter_images, cfg, setup=make_image_state, num_cpus=0.2, batch_size=bs),
        Stage("caption", caption_docs, cfg, setup=open_captioner, num_cpus=cap.num_cpus, num_gpus=cap.num_gpus,
              batch_size=cap.batch_size, concurrency=cap.concurrency),
        Stage("assemble", assemble_docs, cfg, num_cpus=1.0, batch_size=bs),
    ]


def check_config(cfg: WebConfig) -> None:
    """The topic classifier must load and SVG rasterising must work, before any work."""
    _classifier(cfg)
    _fetcher(cfg).close()
