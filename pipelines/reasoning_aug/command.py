"""``braid reason SHARDS_OR_TABLES... --out OUT_DIR --kinds t2i,edit,concept [--captioner ...]``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipelines.config import ConfigError, build_config

from .config import GENERATORS, ReasonConfig


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="SHARDS_OR_TABLES",
                        help="Braid shards (.tar), edit tables (.parquet), directories or globs")
    parser.add_argument("--out", required=True, help="output directory (shards, manifest/, summary.json)")
    parser.add_argument("--kinds", help=f"generators to run, comma-separated (default: {','.join(GENERATORS)})")
    parser.add_argument("--config", help="YAML file of ReasonConfig settings (flags override it)")
    parser.add_argument("--preset", choices=["tiny"], help="start from a named preset")
    parser.add_argument("--captioner", choices=["hf", "openai", "vllm", "stub"], help="captioner backend")
    parser.add_argument("--model", help="model folder or id (hf, vllm) or served model name (openai)")
    parser.add_argument("--base-url", help="OpenAI-compatible server URL (openai backend)")
    parser.add_argument("--device", help="device for the hf backend (cpu, cuda)")
    parser.add_argument("--executor", choices=["ray", "local"], help="Ray Data (default) or in-process")
    parser.add_argument("--ray-address", help="join a running Ray cluster (auto or ray://host:port)")
    parser.add_argument("--num-cpus", type=int, help="CPUs for a local Ray instance")
    parser.add_argument("--batch-size", type=int, help="records per generation batch")
    parser.add_argument("--concurrency", type=int, help="caption actors (Ray)")
    parser.add_argument("--num-gpus", type=float, help="GPUs per caption actor (Ray)")
    parser.add_argument("--per-record", type=int, help="samples per source record and generator (t2i and edit)")
    parser.add_argument("--seed", type=int, help="sampling seed and candidate choice")


def config_from_args(args: argparse.Namespace) -> ReasonConfig:
    overrides = {
        "run.out_dir": args.out, "kinds": args.kinds, "captioner.backend": args.captioner,
        "captioner.model": args.model, "captioner.base_url": args.base_url, "captioner.device": args.device,
        "run.executor": args.executor, "run.ray_address": args.ray_address, "run.num_cpus": args.num_cpus,
        "batch_size": args.batch_size, "concurrency": args.concurrency, "num_gpus": args.num_gpus,
        "t2i.max_per_record": args.per_record, "edit.max_per_record": args.per_record, "seed": args.seed,
    }
    cfg = build_config(ReasonConfig, args.config, overrides, preset=args.preset)
    check_config(cfg)
    return cfg


def check_config(cfg: ReasonConfig) -> None:
    """Captioner problems that would otherwise show only once a caption actor starts, raised before any work.

    In-process backends are not loaded here (a model may need a GPU worker); a local model folder must
    exist. The HTTP backend is cheap to start, so it is started once to find an unreachable server.
    """
    cap = cfg.captioner
    if cap.backend in ("hf", "vllm", "openai") and not cap.model:
        raise ConfigError(f"the {cap.backend} captioner needs a model (--model)")
    if cap.backend in ("hf", "vllm") and cap.model.startswith(("/", ".", "~")) and not Path(cap.model).expanduser().exists():
        raise ConfigError(f"model folder {cap.model} does not exist")
    if cap.backend == "openai":
        from captioners import CaptionerConfigError, make_captioner

        try:
            make_captioner(cap).close()
        except CaptionerConfigError as e:
            raise ConfigError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    from captioners.base import CaptionerConfigError

    from .pipeline import reason

    cfg = config_from_args(args)
    try:
        summary = reason(cfg, args.inputs)
    except CaptionerConfigError as e:
        raise ConfigError(str(e)) from None
    brief = {k: summary[k] for k in ("inputs", "written", "filtered", "failed", "samples_written")}
    print(json.dumps({**brief, "kinds": {g: {k: v for k, v in c.items() if k != "by_error_kind"}
                                         for g, c in summary["kinds"].items()}}, indent=1))
    print(f"summary: {cfg.run.out_dir}/summary.json")
    return 0
