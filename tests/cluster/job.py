"""A small two-stage pipeline job the cluster tests run as their own driver process.

``render`` is a CPU task stage (it draws a JPEG per input; some ids can be told to hang or to
allocate without bound), ``caption`` is an actor stage with a setup step standing in for a
captioner that owns a model. Both append events (``start``/``done`` with pid and process group)
to ``CTL/events.log`` so a test can see where work runs and hit it mid-job.

    python tests/cluster/job.py OUT --address HOST:PORT --n 24 --ctl CTL [--hang in-003] [--hog in-005]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class JobConfig:
    ctl: str
    render_delay: float = 0.1
    caption_delay: float = 0.3
    hang: tuple[str, ...] = ()
    hog: tuple[str, ...] = ()


def _event(cfg: JobConfig, what: str, ids: list[str]) -> None:
    line = json.dumps({"what": what, "pid": os.getpid(), "t": time.time(), "ids": ids}) + "\n"
    fd = os.open(os.path.join(cfg.ctl, "events.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def render(batch: list[dict], cfg: JobConfig) -> list[dict]:
    from PIL import Image

    ids = [r["id"] for r in batch]
    _event(cfg, "render-start", ids)
    out = []
    for rec in batch:
        if rec["id"] in cfg.hang:
            while True:  # an input that never finishes (a decoder stuck on a crafted file)
                time.sleep(0.05)
        if rec["id"] in cfg.hog:
            hoard = [bytearray(64 << 20) for _ in range(64)]  # 4 GiB, a decompression bomb
            rec = {**rec, "hoard": len(hoard)}
        digest = hashlib.sha1(rec["id"].encode()).digest()
        buf = io.BytesIO()
        Image.new("RGB", (32, 24), tuple(digest[:3])).save(buf, "JPEG", quality=90)
        out.append({**rec, "jpg": buf.getvalue()})
    time.sleep(cfg.render_delay)
    _event(cfg, "render-done", ids)
    return out


def setup_caption(cfg: JobConfig) -> dict:
    # stands in for loading a captioning model; the pid file lets a test find and kill this actor
    open(os.path.join(cfg.ctl, f"caption-{os.getpid()}.pid"), "w").close()
    return {"pid": os.getpid()}


def caption(batch: list[dict], cfg: JobConfig, state: dict) -> list[dict]:
    from schemas import CaptionerInfo, ImageSegment, Sample, Source, TextSegment, make_key

    ids = [r["id"] for r in batch]
    _event(cfg, "caption-start", ids)
    time.sleep(cfg.caption_delay)
    out = []
    for rec in batch:
        text = f"a frame drawn for {rec['id']} ({hashlib.sha1(rec['jpg']).hexdigest()[:8]})"
        sample = Sample(key=make_key(f"job/{rec['id']}"), kind="video",
                        segments=(ImageSegment(rec["jpg"], "jpg", 32, 24, role="frame"),
                                  TextSegment(text, role="caption", prompt_id="stub@v1")),
                        source=Source(f"file:///inputs/{rec['id']}.mp4", span=(0.0, 1.0)),
                        captioner=CaptionerInfo("stub", "stub-model", ("stub@v1",)))
        out.append({"id": rec["id"], "input": rec["input"], "status": "ok", "sample": sample})
    _event(cfg, "caption-done", ids)
    return out


def build_stages(cfg: JobConfig):
    from pipelines.core.stage import Stage

    # fractional CPUs: with one 1-CPU node left after a node is lost, a task and the actor still fit
    return [Stage("render", render, cfg, num_cpus=0.5, batch_size=2),
            Stage("caption", caption, cfg, setup=setup_caption, num_cpus=0.5, batch_size=2, concurrency=1)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--address", default=None, help="Ray address; none runs the in-process executor")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--ctl", required=True)
    ap.add_argument("--render-delay", type=float, default=0.1)
    ap.add_argument("--caption-delay", type=float, default=0.3)
    ap.add_argument("--hang", default="")
    ap.add_argument("--hog", default="")
    ap.add_argument("--time-limit", type=float, default=None)
    ap.add_argument("--memory-limit", type=int, default=None)
    a = ap.parse_args(argv)
    from pipelines.core.executor import RunConfig, run_pipeline
    from pipelines.core.stage import new_record

    os.makedirs(a.ctl, exist_ok=True)
    cfg = JobConfig(a.ctl, a.render_delay, a.caption_delay, tuple(filter(None, a.hang.split(","))),
                    tuple(filter(None, a.hog.split(","))))
    run = RunConfig(out_dir=a.out, executor="ray" if a.address else "local", ray_address=a.address,
                    max_samples_per_shard=4, task_time_limit_s=a.time_limit, task_memory_limit_mb=a.memory_limit)
    inputs = [new_record(f"in-{i:03d}") for i in range(a.n)]
    summary = run_pipeline(build_stages(cfg), inputs, run, name="cluster-job")
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
