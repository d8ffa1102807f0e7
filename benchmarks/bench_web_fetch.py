"""Images fetched, decoded and filtered per second: pipelines.net.fetch + the web image rules vs img2dataset.

Both download the same fixed URL list from the same loopback server in the same run. Ours: the
``Fetcher`` (decode and sniff every image) followed by the cheap per-image rules of ``braid web`` (size,
aspect, clarity, sha256, perceptual hash; OCR and captions excluded, they are model work). img2dataset:
``--resize_mode no --output_format files`` (download, decode check, write), run from its own virtual
environment (it pins an older webdataset and pandas), created on first use under benchmarks/.img2dataset-venv.

    python benchmarks/bench_web_fetch.py [--n 600] [--processes 2] [--threads 64]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".img2dataset-venv"


def ensure_img2dataset() -> Path:
    exe = VENV / "bin" / "img2dataset"
    if not exe.exists():
        print(f"creating {VENV} with img2dataset (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "img2dataset"], check=True)
    return exe


class Quiet(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 256  # both clients open many connections at once; a backlog of 5 would drop SYNs
    daemon_threads = True


def _serve_forever(folder: str, port) -> None:
    srv = Server(("127.0.0.1", 0), functools.partial(Quiet, directory=folder))
    port.put(srv.server_address[1])
    srv.serve_forever()


def serve(folder: Path):
    """The loopback server in a process of its own, so it takes no GIL time from either client."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    port = ctx.Queue()
    proc = ctx.Process(target=_serve_forever, args=(str(folder), port), daemon=True)
    proc.start()
    return proc, f"http://127.0.0.1:{port.get(timeout=30)}"


def run_ours(urls: list[str], concurrency: int) -> tuple[float, int]:
    import hashlib

    from pipelines.net.fetch import FetchConfig, Fetcher
    from pipelines.web_interleave import filters as F
    from pipelines.web_interleave.config import FilterConfig

    fc = FilterConfig()
    t0 = time.perf_counter()
    kept = 0
    with Fetcher(FetchConfig(allow_private_net=True, concurrency=concurrency, per_host=concurrency)) as f:
        for i in range(0, len(urls), 256):
            for r in f.fetch(urls[i : i + 256]):
                if not r.ok or F.size_rule(r.width, r.height, fc)[0]:
                    continue
                gray = F.load_gray(r.data)
                F.clarity(gray), F.phash(gray), hashlib.sha256(r.data).hexdigest()
                kept += 1
    return time.perf_counter() - t0, kept


def run_img2dataset(exe: Path, urls: list[str], work: Path, processes: int, threads: int) -> tuple[float, int]:
    (work / "urls.txt").write_text("\n".join(urls) + "\n")
    out = work / "i2d_out"
    cmd = [str(exe), "--url_list", str(work / "urls.txt"), "--output_folder", str(out), "--input_format", "txt",
           "--output_format", "files", "--resize_mode", "no", "--processes_count", str(processes),
           "--thread_count", str(threads), "--number_sample_per_shard", "10000", "--timeout", "10",
           "--retries", "0", "--enable_wandb", "False", "--distributor", "multiprocessing"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    ok = sum(json.loads(p.read_text()).get("successes", 0) for p in out.glob("*_stats.json"))
    return dt, ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=600, help="URLs in the list")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=64)
    args = ap.parse_args()
    from pipelines.web_interleave.synth import drawing

    exe = ensure_img2dataset()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "img").mkdir()
        distinct = 100
        for i in range(distinct):
            (work / "img" / f"{i}.jpg").write_bytes(drawing(i, size=(640, 480)))
        srv, base = serve(work / "img")
        urls = [f"{base}/{i % distinct}.jpg?u={i}" for i in range(args.n)]  # distinct URLs, cached files
        try:
            run_ours(urls[:32], args.threads)  # warm imports, as img2dataset pays its start-up below
            ours_s, ours_ok = run_ours(urls, args.threads)
            i2d_s, i2d_ok = run_img2dataset(exe, urls, work, args.processes, args.threads)
        finally:
            srv.terminate()
    ours_rate, i2d_rate = ours_ok / ours_s, i2d_ok / i2d_s
    print(f"urls: {args.n} (640x480 JPEG, loopback)")
    print(f"braid fetch+decode+filter: {ours_ok} images in {ours_s:.2f} s = {ours_rate:.1f} images/s")
    print(f"img2dataset ({args.processes} processes x {args.threads} threads, files, no resize, includes its "
          f"start-up): {i2d_ok} images in {i2d_s:.2f} s = {i2d_rate:.1f} images/s")
    print(f"ratio braid / img2dataset: {ours_rate / i2d_rate:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
