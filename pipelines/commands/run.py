"""The one command runner of every pipeline (``braid video|web|reason``): the same flags, the output lock,
the settings check against earlier runs, secret redaction, progress, the end-of-run summary and exit codes.

Exit codes: 0 the run finished (every input written or filtered, or some failed); 1 every input failed;
2 bad configuration or usage (nothing was run); 3 another run holds the output directory; 4 the output
directory cannot be written (full or read-only disk: free space and run the same command to resume).
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

from pipelines.core.executor import run_pipeline
from pipelines.core.lock import LockHeld, OutputLock
from pipelines.core.redact import redact
from pipelines.registry import load_pipeline
from schemas.config import ConfigError, build_config, config_dict, dump_yaml, flatten, parse_sets

EXIT_OK, EXIT_ALL_FAILED, EXIT_CONFIG, EXIT_LOCKED, EXIT_DISK = 0, 1, 2, 3, 4

# shared flag -> (dotted field, type, help)
SHARED_FLAGS = {
    "executor": ("run.executor", str, "ray (a local Ray instance unless --ray-address) or local (in-process)"),
    "ray-address": ("run.ray_address", str, "join a running Ray cluster ('auto' or ray://host:port)"),
    "num-cpus": ("run.num_cpus", int, "CPUs for a local Ray instance"),
    "captioner": ("captioner.backend", str, "captioner backend: hf, openai, vllm or stub"),
    "model": ("captioner.model", str, "captioner model: a local folder (hf, vllm) or the served name (openai)"),
    "base-url": ("captioner.base_url", str, "OpenAI-compatible server, e.g. http://host:8000/v1 (openai)"),
    "device": ("captioner.device", str, "device of the in-process captioner (cpu, cuda)"),
    "caption-batch-size": ("caption.batch_size", int, "records per captioner call"),
    "caption-concurrency": ("caption.concurrency", str, "caption workers (Ray actors): N, or MIN,MAX to autoscale"),
}

# settings that change how a run goes, never what it writes: they may differ between runs on one --out
NEUTRAL_LEAVES = frozenset({
    "executor", "ray_address", "num_cpus", "num_gpus", "chunk_size", "progress_s", "concurrency", "per_host",
    "batch_size", "timeout_s", "connect_timeout_s", "retries", "max_retries", "backoff_s", "retry_backoff_s",
    "device", "base_url", "api_key", "engine_args", "task_time_limit_s", "task_memory_limit_mb", "decode_threads",
    "out_dir",
})

# what a run leaves in its output directory; --overwrite removes these and keeps the caption cache
RUN_OUTPUTS = ("manifest", "stage_times", "summary.json", "runs.jsonl", "inputs.json", "stage_times.json", "dedup")


def _default(cfg: object, dotted: str):
    for part in dotted.split("."):
        cfg = getattr(cfg, part, None)
    return cfg


def presets(cls: type) -> list[str]:
    """The named presets of a pipeline config: its classmethods that build an instance."""
    return sorted(n for n, v in vars(cls).items() if isinstance(v, classmethod) and not n.startswith("_"))


def configure(parser: argparse.ArgumentParser, pipe: ModuleType) -> None:
    base = pipe.CONFIG()
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help=getattr(pipe, "INPUT_HELP", "inputs"))
    parser.add_argument("--out", required=True, help="output directory (shards, manifest/, summary.json)")
    parser.add_argument("--config", help=f"YAML file of settings (`braid config show {pipe.NAME}` prints them all)")
    parser.add_argument("--preset", choices=presets(pipe.CONFIG), help="start from a named preset")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any setting by its dotted name (KEY=null unsets an optional one)")
    parser.add_argument("--limit", type=int, metavar="N", help="run only the first N inputs (a trial run)")
    parser.add_argument("--dry-run", action="store_true", help="list the inputs and print the effective config; "
                                                                 "run nothing")
    parser.add_argument("--overwrite", action="store_true", help="start over in --out (keeps the caption cache)")
    parser.add_argument("--no-retry-failed", dest="retry_failed", action="store_false",
                        help="keep inputs that failed in a retryable way (network, 5xx) as they are")
    for flag, (field, tp, help_) in {**SHARED_FLAGS, **getattr(pipe, "FLAGS", {})}.items():
        default = _default(base, field)
        help_ = f"{help_} (default: {json.dumps(default) if not isinstance(default, str) else default or 'none'})"
        dest = "opt_" + flag.replace("-", "_")
        if tp is bool:
            parser.add_argument(f"--{flag}", dest=dest, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            parser.add_argument(f"--{flag}", dest=dest, type=tp, default=None, help=help_)


def overrides_from_args(args: argparse.Namespace, pipe: ModuleType) -> dict:
    over = {"run.out_dir": args.out}
    for flag, (field, _, _) in {**SHARED_FLAGS, **getattr(pipe, "FLAGS", {})}.items():
        value = getattr(args, "opt_" + flag.replace("-", "_"), None)
        if value is not None:
            over[field] = value
    over.update(parse_sets(args.set))
    return over


def make_config(pipe: ModuleType, config_path: str | None = None, overrides: dict | None = None,
                preset: str | None = None):
    """The effective config, checked: ConfigError with one sentence when it cannot work."""
    if preset and preset not in presets(pipe.CONFIG):
        raise ConfigError(f"unknown preset {preset!r} for braid {pipe.NAME} (known: {', '.join(presets(pipe.CONFIG))})")
    cfg = build_config(pipe.CONFIG, config_path, overrides, preset=preset)
    check_config(pipe, cfg)
    return cfg


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


def check_config(pipe: ModuleType, cfg) -> None:
    from captioners.prompts import get_prompt

    caption = getattr(cfg, "caption", None)
    if getattr(caption, "prompts_file", None):
        from captioners.prompts import load_prompts_file

        try:
            load_prompts_file(caption.prompts_file)
        except (OSError, ValueError) as e:
            raise ConfigError(f"caption.prompts_file: {e}") from None
    if caption is not None:
        for f in dataclasses.fields(caption):
            value = getattr(caption, f.name)
            if f.name.endswith("prompt_id") and value:
                try:
                    get_prompt(value)
                except KeyError as e:
                    raise ConfigError(f"caption.{f.name}: {e.args[0]}") from None
    if getattr(cfg, "captioner", None) is not None:
        check_captioner(cfg.captioner)
    if hasattr(pipe, "check_config"):
        pipe.check_config(cfg)


def list_all(pipe: ModuleType, specs: list[str], cfg, limit: int | None = None) -> list[dict]:
    """Input records of every spec in order, each listed once; a spec that matches nothing is a ConfigError."""
    records, seen = [], set()
    for spec in specs:
        recs = pipe.list_inputs([spec], cfg)
        pattern = "://" not in spec and (any(c in spec for c in "*?[") or Path(spec).is_dir())
        if not recs or (pattern and all(r["status"] == "failed" and r.get("error_kind") == "not_found" for r in recs)):
            raise ConfigError(f"input {spec!r} matches nothing (no file, folder entry or list line of a kind "
                              f"braid {pipe.NAME} reads)")
        for r in recs:
            if r["id"] not in seen:
                seen.add(r["id"])
                records.append(r)
    if limit is not None:
        if limit < 1:
            raise ConfigError("--limit must be at least 1")
        records = records[:limit]
    return records


def _last_run(out: Path) -> dict | None:
    runs = out / "runs.jsonl"
    if not runs.is_file():
        return None
    last = None
    with open(runs, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("config") is not None:
                last = rec
    return last


def changed_settings(out: Path, name: str, cfg) -> list[str]:
    """Settings (``key: old -> new``) that differ from the last run in ``out`` and change what is written."""
    last = _last_run(out)
    if last is None:
        return []
    if last.get("pipeline") != name:
        return [f"pipeline: {last.get('pipeline')} -> {name}"]
    old, new = flatten(last["config"]), flatten(redact(config_dict(cfg)))
    diffs = []
    for key in sorted(set(old) | set(new)):
        if key.rsplit(".", 1)[-1] in NEUTRAL_LEAVES:
            continue
        if old.get(key) != new.get(key):
            diffs.append(f"{key}: {json.dumps(old.get(key))} -> {json.dumps(new.get(key))}")
    return diffs


def clear_outputs(out: Path) -> None:
    for name in RUN_OUTPUTS:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
    for p in out.glob("*.tar"):
        p.unlink()
    for p in out.glob("*.tar.tmp"):
        p.unlink()
    for p in out.glob("*_stats.json"):
        p.unlink()


def run_job(pipe: ModuleType | str, specs: list[str], cfg, *, limit: int | None = None, overwrite: bool = False,
            retry_failed: bool = True, progress: bool = False) -> dict:
    """List the inputs, lock ``cfg.run.out_dir``, check it against earlier runs and run; returns the summary."""
    pipe = load_pipeline(pipe) if isinstance(pipe, str) else pipe
    inputs = list_all(pipe, specs, cfg, limit)
    out = Path(cfg.run.out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output directory {str(out)!r} exists and is not a directory")
    with OutputLock(out):
        diffs = changed_settings(out, pipe.NAME, cfg)
        if diffs and not overwrite:
            raise ConfigError(f"{out} holds a run with other settings ({'; '.join(diffs[:5])}"
                              f"{'; ...' if len(diffs) > 5 else ''}); use another --out, or --overwrite to start over")
        if overwrite:
            clear_outputs(out)
        summary = run_pipeline(pipe.build_stages(cfg), inputs, cfg.run, pipe.NAME, cfg, retry_failed=retry_failed,
                               progress=progress)
        if hasattr(pipe, "summary_extra"):  # a pipeline's own accounting beside the shared one
            summary.update(pipe.summary_extra(cfg, inputs))
            tmp = out / "summary.json.tmp"
            tmp.write_text(json.dumps(summary, indent=1, sort_keys=True))
            tmp.replace(out / "summary.json")
        return summary


def summary_text(name: str, s: dict, out: str) -> str:
    lines = [(f"braid {name}: {s['inputs']} inputs: {s['written']} written, {s['filtered']} filtered, "
             f"{s['failed']} failed ({s.get('retried_inputs', 0)} retried, {s.get('resumed_inputs', 0)} already "
             f"done); {s['samples_written']} samples in {s.get('shards', 0)} shards under {out} "
             f"in {s['wall_time_s']:.1f} s")]
    if s.get("by_reason"):
        lines.append("  filtered: " + ", ".join(f"{k} {v}" for k, v in sorted(s["by_reason"].items(), key=lambda kv: -kv[1])))
    if s.get("by_error_kind"):
        lines.append("  failed: " + ", ".join(f"{k} {v}" for k, v in sorted(s["by_error_kind"].items(), key=lambda kv: -kv[1])))
        lines.append(f"  details: braid stats {out} --reason <kind>")
    return "\n".join(lines)


def _disk_error(e: BaseException) -> OSError | None:
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM):
            return e
        e = getattr(e, "cause", None) or e.__cause__ or e.__context__
    return None


def run_command(args: argparse.Namespace, pipe: ModuleType) -> int:
    name = pipe.NAME
    cfg = make_config(pipe, args.config, overrides_from_args(args, pipe), args.preset)
    if args.dry_run:
        inputs = list_all(pipe, args.inputs, cfg, args.limit)
        for r in inputs:
            print(f"{r['id']}\t{redact(r.get('uri') or r['id'])}" + (f"\t[{r['status']}]" if r["status"] != "ok" else ""))
        print(f"# {len(inputs)} inputs; effective config:")
        print(dump_yaml(redact(config_dict(cfg))), end="")
        return EXIT_OK
    try:
        summary = run_job(pipe, args.inputs, cfg, limit=args.limit, overwrite=args.overwrite,
                          retry_failed=args.retry_failed, progress=True)
    except LockHeld as e:
        print(f"braid {name}: {e}", file=sys.stderr)
        return EXIT_LOCKED
    except Exception as e:
        disk = _disk_error(e)
        if disk is None:
            raise
        print(f"braid {name}: cannot write to {cfg.run.out_dir}: {disk.strerror or disk}; free space (or make it "
              f"writable) and run the same command again to resume", file=sys.stderr)
        return EXIT_DISK
    print(summary_text(name, summary, cfg.run.out_dir))
    return EXIT_ALL_FAILED if summary["inputs"] and summary["failed"] == summary["inputs"] else EXIT_OK
