"""``braid status`` on a manifest of about a million records against what a user runs without it: ``braid stats``
on a run whose summary.json is missing (``schemas.load_manifest`` + ``summarize``: every record kept whole).
Both answer "how many inputs are done, and why did the rest fail" from the same files, in the same run; each is
timed as the median of ``--repeat`` runs, and peak memory is compared from the process's high-water mark.

    python benchmarks/bench_status.py [--inputs 920000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "tests"))
sys.path.append(str(ROOT / "tests" / "pipelines" / "commands"))


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--inputs", type=int, default=920_000, help="inputs in the generated run (1.3 records each)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from manifests import write_manifest_run

    from benchmarks.record import Row, write_result
    from pipelines.commands.status import compute_status, read_inputs
    from schemas import load_manifest, summarize

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        exp = write_manifest_run(out, args.inputs, pending=1000)

        def ours():
            s = compute_status(out)
            assert s["done"] == exp["done"] and s["pending"] == 1000

        def baseline():
            summary = summarize(load_manifest(out), read_inputs(out), 0.0)
            assert summary["inputs"] == exp["inputs"]

        ours_s = statistics.median(_timed(ours) for _ in range(args.repeat))
        ours_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        base_s = statistics.median(_timed(baseline) for _ in range(args.repeat))
        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_result("bench_status", [
        Row("status of a run", "s", ours_s, base_s, "braid stats without summary.json (load_manifest + summarize)",
            higher_is_better=False, note=f"{exp['lines']} manifest records, {exp['inputs']} inputs"),
    ], libraries=(), extra={"records": exp["lines"], "peak_rss_mb_after_ours": round(ours_rss),
                           "peak_rss_mb_after_baseline": round(base_rss), "load_average_1m": os.getloadavg()[0]})


if __name__ == "__main__":
    main()
