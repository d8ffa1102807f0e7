"""Scaling of the video pipeline on Ray: the same job with one CPU and with two, in one run.

Each run is ``braid video`` on a local Ray instance pinned (``taskset``) to its CPUs, with
``--num-cpus`` to match, over the same synthetic videos, captioned by the tiny random-weight VLM
(``hf`` backend; ``--captioner stub`` for the deterministic stand-in). One untimed warm-up run (page
cache, compiled bytecode, Ray's first start), then ``--repeat`` rounds of both settings, the order
alternating (1 CPU first in even rounds, 2 CPUs first in odd ones); the median run time of each counts.
Every run must write the same samples (the same inputs written, filtered and failed, the same sample
count): a mismatch fails the benchmark. Prints videos/s for both, the ratio (target >= 1.7x), and the
per-stage times Ray Data reports (``OUT/stage_times.json``) in the last round.

    python benchmarks/bench_scaling.py [--videos 16] [--repeat 3] [--captioner hf|stub] [--keep DIR]

Needs two idle cores: other load on the machine lowers the two-CPU figure first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_videos(root: Path, n: int) -> Path:
    from pipelines.video_interleave.synth import Scene, write_scenes

    vids = root / "videos"
    vids.mkdir(parents=True, exist_ok=True)
    kinds = ("moving", "pan")
    for i in range(n):
        write_scenes(
            vids / f"v{i:03d}.mp4",
            [Scene(kinds[i % 2], 72, 2 * i), Scene(kinds[(i + 1) % 2], 72, 2 * i + 1)],
            fps=24.0,
            size=(320, 180),
        )
    return vids


def run_once(vids: Path, out: Path, cpus: list[int], captioner: str, model: Path | None) -> dict:
    cmd = [
        "taskset",
        "-c",
        ",".join(map(str, cpus)),
        sys.executable,
        "-m",
        "pipelines.commands.cli",
        "video",
        str(vids),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--executor",
        "ray",
        "--num-cpus",
        str(len(cpus)),
        "--captioner",
        captioner,
    ]
    if model:
        cmd += ["--model", str(model)]
    # one thread per process: scaling has to come from Ray running stages side by side
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, check=False)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"braid video failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    from schemas.manifest import load_manifest

    summary = json.loads((out / "summary.json").read_text())
    stats = json.loads((out / "stage_times.json").read_text()) if (out / "stage_times.json").exists() else {}
    outcome = sorted((i, r["status"]) for i, r in load_manifest(out).items())
    shutil.rmtree(out, ignore_errors=True)
    return {
        "cpus": len(cpus),
        "wall_s": wall,
        "run_s": summary["wall_time_s"],
        "summary": summary,
        "stages": stats.get("stages", {}),
        "outcome": (summary["samples_written"], outcome),
    }


def report(r: dict) -> None:
    s = r["summary"]
    print(
        f"\n{r['cpus']} CPU: {s['inputs']} videos -> {s['samples_written']} samples in {r['run_s']:.1f} s "
        f"(process {r['wall_s']:.1f} s): {s['inputs'] / r['run_s']:.3f} videos/s, "
        f"{s['samples_written'] / r['run_s']:.3f} samples/s"
    )
    print(f"  {'stage':24s} {'seconds (summed over workers)':>30s} {'records':>8s}")
    for name, st in r["stages"].items():
        print(f"  {name:24s} {st['seconds']:30.2f} {st['records']:8d}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3, help="rounds of both settings; the median counts")
    ap.add_argument("--captioner", choices=("hf", "stub"), default="hf")
    ap.add_argument("--keep", help="keep inputs here instead of a temp dir")
    ap.add_argument("--no-record", action="store_true", help="print only; write no result file")
    a = ap.parse_args()
    if not shutil.which("taskset") or len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs taskset and at least two CPUs")
    from benchmarks.record import Row, write_result

    root = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="braid-scaling-"))
    try:
        vids = make_videos(root, a.videos)
        model = None
        if a.captioner == "hf":
            from captioners.tiny import make_tiny_vlm

            model = make_tiny_vlm(root / "tiny-vlm")
        cpus = sorted(os.sched_getaffinity(0))[:2]
        settings = {1: cpus[:1], 2: cpus}
        warm = run_once(vids, root / "out-warm", cpus, a.captioner, model)
        runs: dict[int, list[dict]] = {1: [], 2: []}
        for r in range(a.repeat):
            for n in ((1, 2) if r % 2 == 0 else (2, 1)):
                runs[n].append(run_once(vids, root / f"out-{n}cpu-{r}", settings[n], a.captioner, model))
                print(f"round {r}: {n} CPU {runs[n][-1]['run_s']:.1f} s", flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    for n in (1, 2):
        report(runs[n][-1])
    outcomes = {json.dumps(x["outcome"]) for x in [warm, *runs[1], *runs[2]]}
    if len(outcomes) != 1:
        print("FAILED: the runs wrote different samples (samples written, outcome per input differ)")
        return 1
    med = {n: statistics.median(x["run_s"] for x in runs[n]) for n in (1, 2)}
    ratio = med[1] / med[2]
    print(f"\nscaling 1 -> 2 CPUs (median of {a.repeat}): {med[1]:.1f} s -> {med[2]:.1f} s = {ratio:.2f}x "
          f"(target >= 1.7x); captioner {a.captioner}, {a.videos} videos, "
          f"{warm['summary']['samples_written']} samples in every run")
    if a.no_record:
        return 0
    vps = {n: a.videos / med[n] for n in (1, 2)}
    write_result("bench_scaling", [Row("braid video on Ray, 2 CPUs vs 1", "videos/s", vps[2], vps[1],
                                       "the same job on 1 CPU", target_ratio=1.7)],
                 libraries=("ray", "torch", "transformers"),
                 extra={"load_avg": os.getloadavg(), "repeat": a.repeat, "captioner": a.captioner, "videos": a.videos,
                        "run_s": {n: [x["run_s"] for x in runs[n]] for n in (1, 2)},
                        "samples_written": warm["summary"]["samples_written"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
