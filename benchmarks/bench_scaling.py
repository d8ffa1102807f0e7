"""Scaling of the video pipeline on Ray: the same job with one CPU and with two, in one run.

Each run is ``braid video`` on a local Ray instance pinned (``taskset``) to its CPUs, with
``--num-cpus`` to match, over the same synthetic videos, captioned by the tiny random-weight VLM
(``hf`` backend; ``--captioner stub`` for the deterministic stand-in). Prints videos/s for both,
the ratio (target >= 1.7x), and the per-stage times Ray Data reports (``OUT/stage_times.json``).

    python benchmarks/bench_scaling.py [--videos 16] [--captioner hf|stub] [--keep DIR]

Needs two idle cores: other load on the machine lowers the two-CPU figure first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


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
    summary = json.loads((out / "summary.json").read_text())
    stats = json.loads((out / "stage_times.json").read_text()) if (out / "stage_times.json").exists() else {}
    return {
        "cpus": len(cpus),
        "wall_s": wall,
        "run_s": summary["wall_time_s"],
        "summary": summary,
        "stages": stats.get("stages", {}),
    }


def report(r: dict) -> None:
    s = r["summary"]
    print(
        f"\n{r['cpus']} CPU: {s['inputs']} videos -> {s['samples_written']} samples in {r['run_s']:.1f} s "
        f"(process {r['wall_s']:.1f} s): {s['inputs'] / r['run_s']:.3f} videos/s, "
        f"{s['samples_written'] / r['run_s']:.3f} samples/s"
    )
    print(f"  {'Ray Data operator':58s} {'wall s':>8s} {'task wall s':>12s} {'task cpu s':>11s} {'nodes':>6s}")
    for name, st in r["stages"].items():
        print(
            f"  {name[:58]:58s} {st['wall_s']:8.2f} {st['task_wall_s'] or 0:12.2f} {st['task_cpu_s'] or 0:11.2f} "
            f"{st['nodes'] or 0:6d}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--captioner", choices=("hf", "stub"), default="hf")
    ap.add_argument("--keep", help="keep inputs and outputs here instead of a temp dir")
    a = ap.parse_args()
    if not shutil.which("taskset") or len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs taskset and at least two CPUs")
    root = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="braid-scaling-"))
    try:
        vids = make_videos(root, a.videos)
        model = None
        if a.captioner == "hf":
            from captioners.tiny import make_tiny_vlm

            model = make_tiny_vlm(root / "tiny-vlm")
        cpus = sorted(os.sched_getaffinity(0))[:2]
        one = run_once(vids, root / "out-1cpu", cpus[:1], a.captioner, model)
        two = run_once(vids, root / "out-2cpu", cpus, a.captioner, model)
        for r in (one, two):
            report(r)
        ratio = one["run_s"] / two["run_s"]
        print(f"\nscaling 1 -> 2 CPUs: {ratio:.2f}x (target >= 1.7x); captioner {a.captioner}, {a.videos} videos")
        if one["summary"]["samples_written"] != two["summary"]["samples_written"]:
            print("warning: the two runs wrote different numbers of samples")
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
