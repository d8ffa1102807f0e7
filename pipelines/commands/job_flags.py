"""What every pipeline command (``braid video|web|reason``) shares: the captioner and executor flags, the
mapping of flags onto config fields, and the captioner checks made before any work."""

from __future__ import annotations

import argparse
from pathlib import Path

from schemas.config import ConfigError, parse_sets

# flag -> dotted config field, the same in every pipeline's config (its ``captioner`` and ``run`` sections)
JOB_FLAGS = {
    "captioner": "captioner.backend",
    "model": "captioner.model",
    "base_url": "captioner.base_url",
    "device": "captioner.device",
    "executor": "run.executor",
    "ray_address": "run.ray_address",
    "num_cpus": "run.num_cpus",
}


def add_job_flags(parser: argparse.ArgumentParser, set_example: str) -> None:
    parser.add_argument("--captioner", choices=("hf", "openai", "vllm", "stub"), help="captioner backend")
    parser.add_argument("--model", help="captioner model: a local folder or id (hf, vllm) or the served name (openai)")
    parser.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://host:8000/v1 (openai backend)")
    parser.add_argument("--device", help="device of the in-process captioner (cpu, cuda)")
    parser.add_argument("--executor", choices=("ray", "local"), help="Ray Data (default) or in-process")
    parser.add_argument("--ray-address", help="join a running Ray cluster ('auto' or ray://host:port)")
    parser.add_argument("--num-cpus", type=int, help="CPUs for a local Ray instance")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"any other setting by its dotted name, e.g. --set {set_example}")


def job_overrides(args: argparse.Namespace, flags: dict[str, str | tuple[str, ...]]) -> dict:
    """Dotted overrides from the shared flags, the command's own ``flags`` (flag -> field or fields), --out
    and --set (which wins)."""
    overrides = {"run.out_dir": args.out}
    for flag, fields in {**JOB_FLAGS, **flags}.items():
        for name in (fields,) if isinstance(fields, str) else fields:
            overrides[name] = getattr(args, flag)
    overrides.update(parse_sets(args.set))
    return overrides


def check_captioner(cap) -> None:
    """Captioner settings that cannot work, raised before any work. In-process models are not loaded here
    (they may need a GPU worker), but a local model folder must exist; the HTTP backend is cheap to start,
    so it is started once to find a missing URL or an unreachable server."""
    if cap.backend in ("hf", "vllm") and not cap.model:
        raise ConfigError(f"the {cap.backend} captioner needs a model (--model)")
    if cap.backend in ("hf", "vllm") and cap.model.startswith(("/", ".", "~")) and not Path(cap.model).expanduser().exists():
        raise ConfigError(f"model folder {cap.model} does not exist")
    if cap.backend == "openai":
        from captioners import CaptionerConfigError, make_captioner

        try:
            make_captioner(cap).close()
        except CaptionerConfigError as e:
            raise ConfigError(str(e)) from None
