"""The allowed-imports table of ARCHITECTURE.md holds: each part imports only the parts below it (function-level
imports count too), no pipeline imports another, and no two modules import each other."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIPELINE_FOLDERS = ("video_interleave", "web_interleave", "reasoning_aug")

# part -> parts of ours it may import (a part is a top-level package or a pipelines/ sub-package)
ALLOWED = {
    "schemas": set(),
    "captioners": {"schemas"},
    "model": {"schemas"},
    "pipelines.core": {"schemas"},
    "pipelines.net": {"schemas", "pipelines.core"},
    "pipelines.export": {"schemas"},
    **{f"pipelines.{p}": {"schemas", "captioners", "pipelines.core", "pipelines.net"} for p in PIPELINE_FOLDERS},
    "pipelines.registry": set(),
    "pipelines.commands": {"schemas", "captioners", "model", "pipelines.core", "pipelines.net", "pipelines.export",
                           "pipelines.registry", *(f"pipelines.{p}" for p in PIPELINE_FOLDERS)},
    "pipelines.demo": {"schemas", "captioners", "pipelines.commands", *(f"pipelines.{p}" for p in PIPELINE_FOLDERS)},
}


def _part(module: str) -> str | None:
    bits = module.split(".")
    if bits[0] in ("schemas", "captioners", "model"):
        return bits[0]
    if bits[0] == "pipelines" and len(bits) > 1:
        return f"pipelines.{bits[1]}"
    return None


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in ("schemas", "captioners", "model", "pipelines"):
        for f in (ROOT / pkg).rglob("*.py"):
            name = ".".join(f.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = f
    return out


def _imports(f: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(f.read_text(), str(f))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def test_each_part_imports_only_what_the_table_allows():
    bad = []
    for name, f in _modules().items():
        mine = _part(name)
        if mine is None or mine not in ALLOWED:
            continue
        for imp in _imports(f):
            other = _part(imp)
            if other and other != mine and other not in ALLOWED[mine]:
                bad.append(f"{name} imports {imp}")
    assert not bad, "imports against the table in ARCHITECTURE.md:\n" + "\n".join(sorted(set(bad)))


def test_no_two_modules_import_each_other():
    mods = _modules()
    edges = {name: {m for m in _imports(f) if m in mods and m != name} for name, f in mods.items()}
    pairs = sorted({tuple(sorted((a, b))) for a, deps in edges.items() for b in deps
                    if a in edges.get(b, set()) and not (a.startswith(b + ".") or b.startswith(a + "."))})
    assert not pairs, f"modules importing each other: {pairs}"
