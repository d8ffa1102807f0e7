"""``braid reason``: shards and edit tables -> read -> generate (captioner workers) -> assemble -> reasoning shards.

Inputs are (file, generator) pairs, and (table, row group, generator) for tables, so each generator's work
is accounted for on its own. The read stage splits an input into one unit per source record (a shard sample
or a table row); a unit that yields several candidates splits once more. Every unit ends ``written``,
``filtered`` (not applicable, or a model output the checks rejected, its text in ``detail``) or ``failed``
(unreadable record, captioner error). ``summary_extra`` adds ``kinds`` to the run summary: per generator, how
many source records were written, filtered and failed, and why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from pipelines.core.sections import CACHE_DIR
from pipelines.core.stage import Stage, fail, new_record
from pipelines.reasoning_aug.config import ReasonConfig
from schemas import is_complete, load_manifest, outcome
from schemas.manifest import leaves

NAME = "reason"
DESCRIPTION = "shards and edit tables -> reasoning-augmented shards"
CONFIG = ReasonConfig
INPUT_HELP = "Braid shards (.tar), edit tables (.parquet), directories, globs or list files of them"
FLAGS = {
    "kinds": ("kinds", str, "generators to run, comma-separated (t2i, edit, concept)"),
    "per-record": ("max_per_record", int, "samples per source record and generator (t2i and edit)"),
    "seed": ("seed", int, "sampling seed and candidate choice"),
}


def list_inputs(specs: list[str], cfg: ReasonConfig) -> list[dict]:
    """Each shard once per generator; each table row group for ``edit`` (tables hold only edits)."""
    from pipelines.core.inputs import list_inputs as list_files
    from pipelines.reasoning_aug.readers import SHARD_EXTS, TABLE_EXTS, input_type, table_row_groups

    records = []
    for spec in specs:
        for rec in list_files([spec], SHARD_EXTS + TABLE_EXTS):
            path = rec.get("uri", spec)
            if rec["status"] != "ok":
                records += [{**fail(new_record(f"{gen}:{path}", uri=path), rec["stage"], rec["error_kind"], rec["message"]),
                             "gen": gen} for gen in cfg.kinds]
            elif input_type(path) == "table":
                if "edit" in cfg.kinds:
                    n = table_row_groups(path)  # None: unreadable, one input that fails in the read stage
                    records += [new_record(f"edit:{path}#{g}", uri=path, path=path, gen="edit", row_group=g, type="table")
                                for g in (range(n) if n else [0])]
            else:
                records += [new_record(f"{gen}:{path}", uri=path, path=path, gen=gen, row_group=None, type=input_type(path))
                            for gen in cfg.kinds]
    seen: set[str] = set()
    return [r for r in records if not (r["id"] in seen or seen.add(r["id"]))]


def build_stages(cfg: ReasonConfig, factory: Callable[[], object] | None = None) -> list[Stage]:
    """The stage list; ``factory`` (tests, embedding) builds the captioner instead of ``cfg.captioner``."""
    from pipelines.reasoning_aug.assemble import assemble_units
    from pipelines.reasoning_aug.generate import GenerateSettings, generate, open_captioner
    from pipelines.reasoning_aug.read import read_units

    cap = cfg.caption
    settings = GenerateSettings(cfg, str(Path(cfg.run.out_dir) / CACHE_DIR), factory)
    return [
        Stage("read", read_units, cfg, batch_size=1),
        Stage("caption", generate, settings, setup=open_captioner, num_cpus=cap.num_cpus, num_gpus=cap.num_gpus,
              batch_size=cap.batch_size, concurrency=cap.concurrency),
        Stage("assemble", assemble_units, cfg, batch_size=cap.batch_size),
    ]


def summary_extra(cfg: ReasonConfig, inputs: list[dict]) -> dict:
    """Keys the runner adds to the run summary: ``kinds``, the per-generator accounting (``kind_counts``)."""
    return {"kinds": kind_counts(cfg.run.out_dir, inputs)}


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
