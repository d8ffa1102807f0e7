"""``braid video INPUT... --out OUT_DIR``: videos to interleaved frame / change-caption shards."""

from __future__ import annotations

import argparse
import json

from pipelines.commands.job_flags import add_job_flags, check_captioner, job_overrides
from pipelines.video_interleave import pipeline as P
from pipelines.video_interleave.config import VideoConfig
from schemas.config import ConfigError, build_config

# the pipeline's own flags (pipeline.FLAGS) and the caption batch size, beside the shared ones
FLAGS = {**{k.replace("-", "_"): v[0] for k, v in P.FLAGS.items()}, "caption_batch_size": "caption.batch_size"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="video files, directories, globs, or list files (.txt, .jsonl, .csv); local or fsspec URIs")
    parser.add_argument("--out", required=True, help="output directory (shards, manifest/, summary.json)")
    parser.add_argument("--config", help="YAML file of settings (see pipelines/video_interleave/config.py)")
    parser.add_argument("--preset", choices=("tiny", "gpu"), help="start from a named preset")
    add_job_flags(parser, "quality.min_motion=0.02")
    parser.add_argument("--frames-per-clip", type=int, help="frames sampled per clip (default 4)")
    parser.add_argument("--frame-side", type=int, help="longest side of written frames (default 512)")
    parser.add_argument("--max-clip-s", type=float, help="longest clip; longer shots are split (default 10)")
    parser.add_argument("--min-clip-s", type=float, help="shortest clip kept (default 1)")
    parser.add_argument("--max-frames", type=int, help="cap on frames decoded per video (default 9000)")
    parser.add_argument("--time-limit-s", type=float, help="fetch and decode time limit per video (default 120)")
    parser.add_argument("--caption-batch-size", type=int, help="clips per captioner call")


def config_from_args(args: argparse.Namespace) -> VideoConfig:
    cfg = build_config(VideoConfig, args.config, job_overrides(args, FLAGS), preset=args.preset)
    check_config(cfg)
    return cfg


def check_config(cfg: VideoConfig) -> None:
    check_captioner(cfg.captioner)
    P.check_config(cfg)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from captioners.base import CaptionerConfigError
    from pipelines.core.executor import run_pipeline

    cfg = config_from_args(args)
    inputs = P.list_inputs(args.inputs, cfg)
    if not inputs:
        raise ConfigError("no inputs were given")
    try:
        shown = replace(cfg, captioner=replace(cfg.captioner, api_key="***")) if cfg.captioner.api_key else cfg
        summary = run_pipeline(P.build_stages(cfg), inputs, cfg.run, P.NAME, shown)
    except CaptionerConfigError as e:
        raise ConfigError(f"captioner: {e}") from None
    print(json.dumps(summary, indent=1, sort_keys=True))
    print(f"braid video: {summary['inputs']} videos: {summary['written']} written, {summary['filtered']} filtered, "
          f"{summary['failed']} failed; {summary['samples_written']} samples in {summary['shards']} shards "
          f"under {cfg.run.out_dir}")
    return 0
