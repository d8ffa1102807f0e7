"""``braid video INPUT... --out OUT_DIR``: videos to interleaved frame / change-caption shards."""

from __future__ import annotations

import argparse
import json
import os

from ..config import ConfigError, build_config, parse_sets
from ..inputs import VIDEO_EXTS, list_inputs
from .config import VideoConfig

# flag -> dotted config field; every other field is reachable with --set KEY=VALUE or the YAML file
FLAGS = {
    "captioner": "captioner.backend",
    "model": "captioner.model",
    "base_url": "captioner.base_url",
    "ray_address": "run.ray_address",
    "executor": "run.executor",
    "num_cpus": "run.num_cpus",
    "frames_per_clip": "frames.frames_per_clip",
    "frame_side": "frames.frame_side",
    "max_clip_s": "shots.max_clip_s",
    "min_clip_s": "quality.min_duration_s",
    "max_frames": "probe.max_frames",
    "time_limit_s": "probe.time_limit_s",
    "caption_batch_size": "caption.batch_size",
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="video files, directories, globs, or list files (.txt, .jsonl, .csv); local or fsspec URIs")
    parser.add_argument("--out", required=True, help="output directory (shards, manifest/, summary.json)")
    parser.add_argument("--config", help="YAML file of settings (see pipelines/video_interleave/config.py)")
    parser.add_argument("--preset", choices=("tiny", "gpu"), help="start from a named preset")
    parser.add_argument("--captioner", choices=("hf", "openai", "vllm", "stub"), help="captioner backend")
    parser.add_argument("--model", help="captioner model: a local folder (hf, vllm) or the served name (openai)")
    parser.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://host:8000/v1")
    parser.add_argument("--ray-address", help="join a running Ray cluster ('auto' or ray://host:port)")
    parser.add_argument("--executor", choices=("ray", "local"), help="Ray Data (default) or in-process")
    parser.add_argument("--num-cpus", type=int, help="CPUs for a local Ray instance")
    parser.add_argument("--frames-per-clip", type=int, help="frames sampled per clip (default 4)")
    parser.add_argument("--frame-side", type=int, help="longest side of written frames (default 512)")
    parser.add_argument("--max-clip-s", type=float, help="longest clip; longer shots are split (default 10)")
    parser.add_argument("--min-clip-s", type=float, help="shortest clip kept (default 1)")
    parser.add_argument("--max-frames", type=int, help="cap on frames decoded per video (default 9000)")
    parser.add_argument("--time-limit-s", type=float, help="fetch and decode time limit per video (default 120)")
    parser.add_argument("--caption-batch-size", type=int, help="clips per captioner call")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other setting by its dotted name, e.g. --set quality.min_motion=0.02")


def config_from_args(args: argparse.Namespace) -> VideoConfig:
    overrides = {field: getattr(args, flag) for flag, field in FLAGS.items()}
    overrides["run.out_dir"] = args.out
    overrides.update(parse_sets(args.set))
    cfg = build_config(VideoConfig, args.config, overrides, preset=args.preset)
    check_captioner(cfg)
    return cfg


def check_captioner(cfg: VideoConfig) -> None:
    """Captioner settings that cannot work, found before any video is decoded."""
    c = cfg.captioner
    if c.backend in ("hf", "vllm") and not c.model:
        raise ConfigError(f"the {c.backend} captioner needs --model (a local model folder)")
    if c.backend in ("hf", "vllm") and os.sep in c.model and not os.path.isdir(c.model):
        raise ConfigError(f"captioner model folder {c.model!r} does not exist")
    if c.backend == "openai" and not (c.base_url or os.environ.get("BRAID_OPENAI_BASE_URL")):
        raise ConfigError("the openai captioner needs --base-url (or BRAID_OPENAI_BASE_URL)")
    if cfg.caption.max_tokens < 1 or cfg.caption.batch_size < 1 or cfg.caption.concurrency < 1:
        raise ConfigError("caption.max_tokens, caption.batch_size and caption.concurrency must be positive")
    try:
        import captioners
        from captioners.prompts import get_prompt
    except ImportError as e:
        raise ConfigError(f"the captioners package cannot be imported ({e})") from None
    if not hasattr(captioners, "make_captioner"):
        raise ConfigError("this installation has no captioner backends (captioners.make_captioner is missing)")
    try:
        get_prompt(cfg.caption.prompt_id)
    except KeyError as e:
        raise ConfigError(str(e.args[0])) from None


def run(args: argparse.Namespace) -> int:
    from captioners.base import CaptionerConfigError

    from .pipeline import run_video

    cfg = config_from_args(args)
    inputs = list_inputs(args.inputs, VIDEO_EXTS)
    if not inputs:
        raise ConfigError("no inputs were given")
    try:
        summary = run_video(inputs, cfg)
    except CaptionerConfigError as e:
        raise ConfigError(f"captioner: {e}") from None
    print(json.dumps(summary, indent=1, sort_keys=True))
    print(f"braid video: {summary['inputs']} videos: {summary['written']} written, {summary['filtered']} filtered, "
          f"{summary['failed']} failed; {summary['samples_written']} samples in {summary['shards']} shards "
          f"under {cfg.run.out_dir}")
    return 0
