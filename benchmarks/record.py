"""Benchmark result files: every figure a benchmark reports is written to
``benchmarks/results/<benchmark>-<machine>.json`` with the commit, the machine and the library versions, so a
figure in the README or a note can be traced to the run that produced it. ``report.py`` renders them.

A result holds one or more rows; each row is one comparison: ours against its baseline.

    write_result("bench_web_fetch", rows=[Row(metric="images/s", ours=812.0, baseline=640.0,
                 baseline_name="img2dataset --skip_reencode True", target=">= 1.0x", higher_is_better=True)],
                 extra={...})
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    """One comparison. ``ratio`` is ours/baseline when higher is better, baseline/ours when lower is better
    (so a ratio above 1 always favours ours). ``met`` is filled from ``target_ratio`` when given."""

    name: str
    metric: str
    ours: float
    baseline: float | None = None
    baseline_name: str = ""
    higher_is_better: bool = True
    target_ratio: float | None = None
    ratio: float | None = None
    met: bool | None = None
    note: str = ""
    target: str = ""  # an absolute target ("60 tokens/s"), judged by the benchmark into ``met``

    def __post_init__(self):
        if self.ratio is None and self.baseline:
            self.ratio = self.ours / self.baseline if self.higher_is_better else self.baseline / self.ours
        if self.target_ratio is not None and self.ratio is not None:
            self.met = self.ratio >= self.target_ratio


@dataclass
class Result:
    benchmark: str
    machine: str
    rows: list[Row]
    command: str
    commit: str
    date: str
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def machine_name() -> str:
    """A short name for the machine: the GPU's name when torch sees one, else the CPU model and core count."""
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    except ImportError:
        pass
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores"


def machine_slug(name: str) -> str:
    low = name.lower()
    if "h200" in low or "h100" in low or "a100" in low:
        gpu = re.search(r"(h200|h100|a100)", low).group(1)
        n = re.search(r"x(\d+)$", low)
        return gpu + (f"x{n.group(1)}" if n and n.group(1) != "1" else "")
    m = re.search(r"(\d+) cores", low)
    return f"cpu{m.group(1) if m else ''}"


def current_commit() -> str:
    """The checkout's commit; ``BRAID_COMMIT`` wins (a copied tree, as on a remote GPU machine, may carry a stale
    ``.git``)."""
    if os.environ.get("BRAID_COMMIT"):
        return os.environ["BRAID_COMMIT"]
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                             cwd=RESULTS.parent, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=RESULTS.parent, check=False).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def library_versions(names: tuple[str, ...]) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def write_result(benchmark: str, rows: list[Row], *, libraries: tuple[str, ...] = ("torch",),
                 extra: dict | None = None, out_dir: Path | None = None, machine: str | None = None) -> Path:
    """Write the result file and print its rows; returns the path."""
    machine = machine or machine_name()
    res = Result(benchmark=benchmark, machine=machine, rows=rows, command=" ".join([Path(sys.argv[0]).name,
                 *sys.argv[1:]]), commit=os.environ.get("BRAID_COMMIT") or current_commit(),
                 date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                 versions=library_versions(libraries), extra=extra or {})
    out_dir = out_dir or RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{benchmark}-{machine_slug(machine)}.json"
    path.write_text(json.dumps(asdict(res), indent=1) + "\n")
    for r in rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        status = "" if r.met is None else (" (target met)" if r.met else " (target MISSED)")
        print(f"{benchmark}: {r.name}: ours {r.ours:.4g} {r.metric}, baseline {r.baseline_name} "
              f"{r.baseline if r.baseline is None else f'{r.baseline:.4g}'} -> {ratio}{status}")
    print(f"result written to {path}")
    return path
