"""Print one markdown table from every result file in ``benchmarks/results/`` (the README's Performance
section is this table). The machine column gives the 1-minute load average at the end of the run where the
result records it (CPU figures taken on a busy machine are noisy).

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
    lines = [("| benchmark | measurement | ours | baseline (what a user would run instead) | ratio | target | "
             "machine (load) | commit |"), "|---|---|---|---|---|---|---|---|"]
    for path in sorted(results_dir.glob("*.json")):
        res = json.loads(path.read_text())
        load = res.get("extra", {}).get("load_avg")
        machine = res["machine"] + (f" (load {load[0]:.1f})" if load else "")
        for r in res["rows"]:
            verdict = "met" if r.get("met") else "**missed**"
            if r.get("target_ratio") is not None:
                target = f">= {r['target_ratio']:g}x {verdict}"
            else:  # an absolute target (tokens/s, MFU), named in newer result files
                target = "-" if r.get("met") is None else f"{r.get('target', '')} {verdict}".strip()
            ratio = "-" if r.get("ratio") is None else f"{r['ratio']:.2f}x"
            base = "-" if r.get("baseline") is None else f"{fmt(r['baseline'])} ({r['baseline_name']})"
            lines.append(f"| {res['benchmark']} | {r['name']} | {fmt(r['ours'])} {r['metric']} | {base} | {ratio} | "
                         f"{target} | {machine} | {res['commit']} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=RESULTS)
    print(render(ap.parse_args().results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
