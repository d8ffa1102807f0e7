"""Print one markdown table from every result file in ``benchmarks/results/`` (the README's Performance
section is this table).

    python benchmarks/report.py [--results DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def render(results_dir: Path) -> str:
    lines = ["| benchmark | measurement | ours | baseline (what a user would run instead) | ratio | target | "
             "machine | commit |", "|---|---|---|---|---|---|---|---|"]
    for path in sorted(results_dir.glob("*.json")):
        res = json.loads(path.read_text())
        for r in res["rows"]:
            target = "-" if r.get("target_ratio") is None else f">= {r['target_ratio']:g}x " + (
                "met" if r.get("met") else "**missed**")
            ratio = "-" if r.get("ratio") is None else f"{r['ratio']:.2f}x"
            base = "-" if r.get("baseline") is None else f"{fmt(r['baseline'])} ({r['baseline_name']})"
            lines.append(f"| {res['benchmark']} | {r['name']} | {fmt(r['ours'])} {r['metric']} | {base} | {ratio} | "
                         f"{target} | {res['machine']} | {res['commit']} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=RESULTS)
    print(render(ap.parse_args().results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
