"""The ``braid reason`` pipeline: read -> generate (captioner actor) -> assemble, with per-generator accounting.

Inputs are (file, generator) pairs, and (table, row group, generator) for tables, so each generator's
work is accounted for on its own. The read stage splits an input into one unit per source record
(a shard sample or a table row); a unit that yields several candidates splits once more. Every
unit ends ``written``, ``filtered`` (not applicable, or a model output the checks rejected, its text
in ``detail``) or ``failed`` (unreadable record, captioner error). ``summary.json`` gains ``kinds``:
per generator, how many source records were written, filtered and failed, and why.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from captioners.prompts import get_prompt
from pipelines.core.executor import run_pipeline
from pipelines.core.stage import Stage, drop, fail, new_record, split
from schemas import SampleError, ShardError, is_complete, load_manifest, outcome, validate
from schemas.manifest import leaves

from pipelines.reasoning_aug import concept, edit, t2i
from pipelines.reasoning_aug.checks import Rejection, check_text, clean_text
from pipelines.reasoning_aug.common import choose
from pipelines.reasoning_aug.config import ReasonConfig
from pipelines.reasoning_aug.readers import TableError, expand_inputs, input_type, read_shard, read_table, table_row_groups

GENERATOR_MODULES = {"t2i": t2i, "edit": edit, "concept": concept}


def list_inputs(paths: list[str], kinds: tuple[str, ...]) -> list[dict]:
    """Input records: each shard once per generator, each table row group for ``edit`` (tables hold only edits)."""
    records = []
    for path in expand_inputs(paths):
        kind = input_type(path)
        if kind == "table":
            if "edit" not in kinds:
                continue
            n = table_row_groups(path)
            for g in range(n) if n else [0]:
                records.append(new_record(f"edit:{path}#{g}", path=path, gen="edit", row_group=g, type="table"))
        else:
            for gen in kinds:
                records.append(new_record(f"{gen}:{path}", path=path, gen=gen, row_group=None, type=kind))
    return records


# ---------------------------------------------------------------- stage 1: read and plan


def _source_info(src) -> dict:
    return {"uri": src.uri, "key": src.key, "position": src.position, "kind": src.kind, "licence": src.licence,
            "extra": src.provenance()}


def _units(src, gen: str, cfg: ReasonConfig) -> list[dict]:
    """The unit of one source record: a record to generate, a filtered/failed part, or a split into candidates."""
    if src.error:
        return [{"status": "failed", "stage": "read", "error_kind": "bad_record", "message": src.error}]
    got = GENERATOR_MODULES[gen].candidates(src, cfg)
    if isinstance(got, Rejection):
        return [{"status": "filtered", "stage": "plan", "reason": got.reason, "scores": got.scores,
                 "detail": got.message}]
    k = getattr(getattr(cfg, gen), "max_per_record", 1)  # a concept unit is the whole document
    picked = choose(len(got), k, cfg.seed, src.uri, src.key, gen)
    return [{"gen": gen, "src": _source_info(src), "payload": got[i], "cand": i, "out": {}, "texts": {}}
            for i in picked]


def read_units(batch: list[dict], cfg: ReasonConfig) -> list[dict]:
    """Stage: an input file (and generator) -> split into one unit per source record."""
    out: list[dict] = []
    for rec in batch:
        path, gen = rec["path"], rec["gen"]
        if rec["type"] == "unknown":
            out.append(fail(rec, "read", "unsupported_input", f"{path}: not a shard (.tar) or table (.parquet)"))
            continue
        if not os.path.isfile(path):
            out.append(fail(rec, "read", "not_found", f"{path}: no such file"))
            continue
        try:
            sources = list(read_shard(path) if rec["type"] == "shard" else read_table(path, rec["row_group"], cfg.edit))
        except (ShardError, TableError) as e:
            out.append(fail(rec, "read", "unreadable", str(e)))
            continue
        if not sources:
            out.append(drop(rec, "read", "empty_input", detail=f"{path} holds no records"))
            continue
        groups = [_units(src, gen, cfg) for src in sources]
        parts = [g[0] if len(g) == 1 else {"cands": g} for g in groups]
        for part in split(rec, parts):
            if "cands" in part:
                cands = part.pop("cands")
                out.extend(split(part, cands))
            else:
                out.append(part)
    return out


# ---------------------------------------------------------------- stage 2: generate


@dataclass(frozen=True)
class GenerateSettings:
    """The generate stage's configuration; ``factory`` (tests, embedding) replaces ``make_captioner``."""

    cfg: ReasonConfig
    cache_dir: str | None = None
    factory: Callable[[], object] | None = None


def setup_captioner(settings: GenerateSettings):
    if settings.factory is not None:
        return settings.factory()
    from captioners import make_captioner

    return make_captioner(settings.cfg.captioner, settings.cache_dir)


def _decide(step, unit: dict, result, cfg: ReasonConfig) -> dict | None:
    """The unit after one model reply: updated (None returned, it goes on) or a terminal record."""
    gen = unit["gen"]
    stage = f"{gen}.{step.name}"
    if result.status == "error":
        return fail(unit, stage, "captioner_error", f"{stage}: {result.error or 'the captioner returned an error'}")
    text = clean_text(result.text or "")
    req_prompt = unit["_req"].prompt_id
    budget = get_prompt(req_prompt).max_tokens
    limits = cfg.limits
    rej = check_text(text, budget, result.output_tokens, result.status == "truncated", limits)
    if rej and not step.prose and rej.reason in ("repetition", "no_words", "stray_markup"):
        rej = None  # short replies ("2 -> 4", "ACCEPT: ...") are judged by their parser
    got = rej or step.accept(unit, text, cfg)
    if isinstance(got, Rejection):
        return drop(unit, stage, got.reason, {**got.scores, "prompt_id": req_prompt}, detail=result.text)
    unit["out"].update(got)
    unit["texts"][step.name] = {"text": text, "status": result.status, "prompt_id": req_prompt,
                                "tokens": result.output_tokens}
    return None


def generate(batch: list[dict], settings: GenerateSettings, captioner) -> list[dict]:
    """Stage: run each unit's generator steps; one batched captioner call per step across the batch."""
    cfg = settings.cfg
    units = [{**r, "out": dict(r.get("out", {})), "texts": dict(r.get("texts", {})),
              "captioner": {"backend": getattr(captioner, "backend", "?"), "model": getattr(captioner, "model", "?")}}
             for r in batch]
    done: dict[int, dict] = {}
    n_steps = max(len(GENERATOR_MODULES[u["gen"]].STEPS) for u in units)
    for s in range(n_steps):
        asked: list[tuple[int, object]] = []
        for i, u in enumerate(units):
            steps = GENERATOR_MODULES[u["gen"]].STEPS
            if i in done or s >= len(steps):
                continue
            req = steps[s].request(u, cfg)
            if req is not None:
                u["_req"] = req
                asked.append((i, steps[s]))
        if not asked:
            continue
        results = captioner.caption([units[i]["_req"] for i, _ in asked])
        if len(results) != len(asked):
            raise RuntimeError(f"the captioner returned {len(results)} results for {len(asked)} requests")
        for (i, step), result in zip(asked, results):
            decided = _decide(step, units[i], result, cfg)
            if decided is not None:
                done[i] = decided
    out = []
    for i, u in enumerate(units):
        u.pop("_req", None)
        out.append(done.get(i, u))
    return out


# ---------------------------------------------------------------- stage 3: assemble


def assemble(batch: list[dict], cfg: ReasonConfig) -> list[dict]:
    """Stage: build and validate the sample of each unit that passed every step."""
    out = []
    for u in batch:
        try:
            sample = GENERATOR_MODULES[u["gen"]].assemble(u, cfg)
            validate(sample)
        except SampleError as e:
            out.append(fail(u, "assemble", "invalid_sample", str(e)))
            continue
        out.append({"id": u["id"], "input": u["input"], "status": "ok", "sample": sample})
    return out


def build_stages(cfg: ReasonConfig, factory: Callable[[], object] | None = None) -> list[Stage]:
    settings = GenerateSettings(cfg, str(Path(cfg.run.out_dir) / "cache"), factory)
    return [
        Stage("read", read_units, cfg, batch_size=1),
        Stage("generate", generate, settings, setup=setup_captioner, num_gpus=cfg.num_gpus,
              batch_size=cfg.batch_size, concurrency=cfg.concurrency),
        Stage("assemble", assemble, cfg, batch_size=cfg.batch_size),
    ]


# ---------------------------------------------------------------- run and account


def kind_counts(out_dir: str | Path, inputs: list[dict]) -> dict:
    """Per generator: inputs, source records (units), and units written / filtered / failed, with reasons."""
    out = Path(out_dir)
    recs = {i: r for i, r in load_manifest(out).items() if r["status"] != "written" or is_complete(out / r["shard"])}
    kinds: dict[str, dict] = {}
    for inp in inputs:
        k = kinds.setdefault(inp["gen"], {"inputs": 0, "records": 0, "written": 0, "filtered": 0, "failed": 0,
                                          "samples_written": 0, "by_reason": Counter(), "by_error_kind": Counter()})
        k["inputs"] += 1
        top = recs.get(inp["id"])
        units = top.get("children", []) if top and top["status"] == "split" else [inp["id"]]
        for uid in units:
            k["records"] += 1
            k[outcome(uid, recs) or "failed"] += 1
            for leaf in leaves(uid, recs) or [{"status": "failed", "error_kind": "incomplete"}]:
                if leaf["status"] == "written":
                    k["samples_written"] += 1
                elif leaf["status"] == "filtered":
                    k["by_reason"][leaf.get("reason", "unknown")] += 1
                elif leaf["status"] == "failed":
                    k["by_error_kind"][leaf.get("error_kind", "unknown")] += 1
    for k in kinds.values():
        k["by_reason"], k["by_error_kind"] = dict(k["by_reason"]), dict(k["by_error_kind"])
    return kinds


def reason(cfg: ReasonConfig, paths: list[str], factory: Callable[[], object] | None = None) -> dict:
    """Run ``braid reason`` over ``paths`` into ``cfg.run.out_dir``; returns the summary (also in summary.json)."""
    inputs = list_inputs(paths, cfg.kinds)
    summary = run_pipeline(build_stages(cfg, factory), inputs, cfg.run, "reason", cfg)
    summary["kinds"] = kind_counts(cfg.run.out_dir, inputs)
    path = Path(cfg.run.out_dir) / "summary.json"
    tmp = path.with_name("summary.json.tmp")
    tmp.write_text(json.dumps(summary, indent=1, sort_keys=True))
    os.replace(tmp, path)
    return summary
