"""Images fetched, checked and written to shards per second: pipelines.net.fetch against img2dataset.

Both download the same list of distinct URLs (``--n``, 20,000 by default; 100 different 640x480 JPEGs behind
them) from the same loopback HTTP server, which runs in a process of its own and serves from memory. Both
decode every image fully to check it and write the original bytes, untouched, to tar shards on disk
(10,000 samples a shard, a JSON member beside each image):
  ours:        ``Fetcher`` with its safety checks on (address guard with loopback allowed, byte cap, pixel
               cap, full decode), sha256 of each image, shards written with ``tarfile``;
  img2dataset: ``--resize_mode no --skip_reencode True --output_format webdataset`` (sha256 by default),
               from a virtual environment of its own (it pins older webdataset and pandas), created on
               first use under ``$BRAID_BENCH_CACHE`` (default /tmp/bench-cache).
Start-up is timed for both: each side runs as a fresh process, timed from its launch to its exit. The
rounds alternate which side goes first; the median of ``--repeat`` rounds counts.
Target: ours >= 1.0x img2dataset's images/s.

    python benchmarks/bench_web_fetch.py [--n 20000] [--repeat 3] [--processes 2] [--threads 64]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CACHE = Path(os.environ.get("BRAID_BENCH_CACHE", "/tmp/bench-cache"))
VENV = CACHE / "img2dataset-venv"
PER_SHARD = 10_000


def ensure_img2dataset() -> Path:
    exe = VENV / "bin" / "img2dataset"
    if not exe.exists():
        print(f"creating {VENV} with img2dataset (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "img2dataset"], check=True)
    return exe


def _serve_forever(files: dict[str, bytes], port) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = files.get(self.path.split("?", 1)[0])
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    class Server(http.server.ThreadingHTTPServer):
        request_queue_size = 1024  # both clients open many connections at once; a short backlog drops SYNs
        daemon_threads = True

    srv = Server(("127.0.0.1", 0), Handler)
    port.put(srv.server_address[1])
    srv.serve_forever()


def serve(files: dict[str, bytes]):
    """The loopback server in a process of its own, so it takes no GIL time from either client."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    port = ctx.Queue()
    proc = ctx.Process(target=_serve_forever, args=(files, port), daemon=True)
    proc.start()
    return proc, f"http://127.0.0.1:{port.get(timeout=30)}"


def worker(url_file: str, out_dir: str, threads: int) -> int:
    """Ours, as a process of its own: fetch with every check, write the original bytes to tar shards."""
    import hashlib
    import io
    import tarfile

    from pipelines.net.fetch import FetchConfig, Fetcher

    urls = Path(url_file).read_text().split()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ok = failed = 0
    tar = None
    t0 = time.perf_counter()

    def add(name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(data), 0
        tar.addfile(info, io.BytesIO(data))

    with Fetcher(FetchConfig(allow_private_net=True, concurrency=threads, per_host=threads, retries=0)) as f:
        for i in range(0, len(urls), 512):
            for r in f.fetch(urls[i : i + 512]):
                if not r.ok:
                    failed += 1
                    continue
                if ok % PER_SHARD == 0:
                    if tar:
                        tar.close()
                    tar = tarfile.open(out / f"{ok // PER_SHARD:05d}.tar", "w")  # noqa: SIM115 (closed above/below)
                key = f"{ok:09d}"
                add(f"{key}.{r.ext}", r.data)
                meta = {"url": r.url, "width": r.width, "height": r.height, "sha256": hashlib.sha256(r.data).hexdigest()}
                add(f"{key}.json", json.dumps(meta).encode())
                ok += 1
    if tar:
        tar.close()
    print(json.dumps({"ok": ok, "failed": failed, "work_s": time.perf_counter() - t0}))
    return 0


def run_ours(url_file: Path, out: Path, threads: int) -> tuple[float, int, float]:
    """(seconds from launch to exit, images written, seconds from the first fetch to the last shard closed)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(url_file), str(out), "--threads",
           str(threads)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    return dt, res["ok"], res["work_s"]


def run_img2dataset(exe: Path, url_file: Path, out: Path, processes: int, threads: int) -> tuple[float, int, float]:
    """(seconds from launch to exit, images written, seconds from the first shard's start to the last's end as
    img2dataset's own stats give them)."""
    cmd = [str(exe), "--url_list", str(url_file), "--output_folder", str(out), "--input_format", "txt",
           "--output_format", "webdataset", "--resize_mode", "no", "--skip_reencode", "True",
           "--processes_count", str(processes), "--thread_count", str(threads),
           "--number_sample_per_shard", str(PER_SHARD), "--timeout", "10", "--retries", "0",
           "--enable_wandb", "False", "--distributor", "multiprocessing"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    stats = [json.loads(p.read_text()) for p in out.glob("*_stats.json")]
    work = max(s["end_time"] for s in stats) - min(s["start_time"] for s in stats)
    return dt, sum(s.get("successes", 0) for s in stats), work


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20_000, help="URLs in the list (all distinct)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; the median counts")
    ap.add_argument("--processes", type=int, default=2, help="img2dataset processes")
    ap.add_argument("--threads", type=int, default=64, help="img2dataset threads per process; ours: open requests")
    ap.add_argument("--no-record", action="store_true", help="print only; write no result file")
    ap.add_argument("--worker", nargs=2, metavar=("URL_FILE", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(*args.worker, args.threads)
    import shutil

    from benchmarks.record import Row, write_result
    from pipelines.web_interleave.synth import drawing

    exe = ensure_img2dataset()
    files = {f"/{i}.jpg": drawing(i, size=(640, 480)) for i in range(100)}
    srv, base = serve(files)
    times: dict[str, list[float]] = {"ours": [], "img2dataset": []}
    work_times: dict[str, list[float]] = {"ours": [], "img2dataset": []}
    counts: dict[str, list[int]] = {"ours": [], "img2dataset": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            url_file = work / "urls.txt"
            url_file.write_text("\n".join(f"{base}/{i % len(files)}.jpg?u={i}" for i in range(args.n)) + "\n")
            sides = {"ours": lambda out: run_ours(url_file, out, args.threads),
                     "img2dataset": lambda out: run_img2dataset(exe, url_file, out, args.processes, args.threads)}
            for r in range(args.repeat):
                for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
                    out = work / f"{name}-{r}"
                    dt, ok, work_s = sides[name](out)
                    shard_bytes = sum(p.stat().st_size for p in out.glob("*.tar"))
                    shutil.rmtree(out)
                    times[name].append(dt)
                    work_times[name].append(work_s)
                    counts[name].append(ok)
                    print(f"round {r}: {name:12s} {ok} images in {dt:.2f} s = {ok / dt:.0f} images/s "
                          f"({ok / work_s:.0f} images/s without start-up; {shard_bytes / 2**20:.0f} MiB of shards)",
                          flush=True)
    finally:
        srv.terminate()
    rate = {k: statistics.median(c / t for c, t in zip(counts[k], times[k])) for k in times}
    steady = {k: statistics.median(c / t for c, t in zip(counts[k], work_times[k])) for k in times}
    if min(min(c) for c in counts.values()) < args.n:
        print(f"warning: not every URL was written: {counts}")
    print(f"urls: {args.n} distinct (640x480 JPEG, loopback); start-up timed for both; median of {args.repeat}")
    print(f"braid fetch (guard, byte cap, decode check) -> shards: {rate['ours']:.0f} images/s")
    print(f"img2dataset --skip_reencode True, no resize -> webdataset ({args.processes} processes x {args.threads} "
          f"threads): {rate['img2dataset']:.0f} images/s")
    print(f"ratio braid / img2dataset: {rate['ours'] / rate['img2dataset']:.2f}x (target >= 1.0x)")
    print(f"without start-up (from the first fetch to the last shard written): braid {steady['ours']:.0f}, "
          f"img2dataset {steady['img2dataset']:.0f} images/s = {steady['ours'] / steady['img2dataset']:.2f}x")
    if args.no_record:
        return 0
    base = f"img2dataset --skip_reencode True, no resize, {args.processes} processes x {args.threads} threads"
    rows = [Row("fetch + check + write shards, start-up timed", "images/s", rate["ours"], rate["img2dataset"], base,
                target_ratio=1.0, note=f"{args.n} URLs from loopback; each side a fresh process"),
            Row("the same, start-up excluded", "images/s", steady["ours"], steady["img2dataset"], base,
                note="first fetch to last shard written (img2dataset: its shard stats)")]
    write_result("bench_web_fetch", rows, libraries=("aiohttp", "pillow"),
                 extra={"load_avg": os.getloadavg(), "urls": args.n, "repeat": args.repeat, "seconds": times,
                        "seconds_without_startup": work_times, "images_written": counts,
                        "startup": "timed for both in the first row, excluded for both in the second",
                        "img2dataset_version": _i2d_version()})
    return 0


def _i2d_version() -> str:
    code = "import importlib.metadata as m; print(m.version('img2dataset'))"
    out = subprocess.run([str(VENV / "bin" / "python"), "-c", code], capture_output=True, text=True, check=False)
    return out.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
