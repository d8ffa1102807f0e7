"""``braid view`` on a run of 100,000 samples (text-only web documents, so the figure is the viewer's, not the
thumbnailer's): time to build the view, then in headless Chromium (over the DevTools protocol) the time from
navigation to the first rendered page (first load in a fresh browser, and the best of three reloads), a jump to
page 1,500, a caption-status filter and a text search over every sample. No baseline: nothing else pages through
a Braid run (the previous ``braid view`` drew N random samples onto one page).

    python benchmarks/bench_view.py [--samples 100000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "tests" / "pipelines" / "commands"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=100_000)
    args = ap.parse_args()
    from browser import Browser

    from benchmarks.record import Row, write_result
    from pipelines.commands.cli import main as braid
    from schemas import Sample, ShardWriter, Source, TextSegment

    n = args.samples
    with tempfile.TemporaryDirectory() as tmp:
        run, view = Path(tmp) / "run", Path(tmp) / "view"
        with ShardWriter(run, "shard-r00", max_count=5000) as w:
            for i in range(n):
                w.write(Sample(f"b-{i:06d}", "web", (
                    TextSegment(f"document {i} about bolts and wheels, step {i % 17}", role="body"),
                    TextSegment(f"caption {i}", role="caption", status="ok" if i % 9 else "truncated")),
                    Source(f"https://site{i % 300}.example/p{i}"), None, {"topic": {"score": (i % 1000) / 1000}}))
        t0 = time.perf_counter()
        assert braid(["view", str(run), "--out", str(view), "--workers", "2"]) == 0
        build_s = time.perf_counter() - t0
        b = Browser(Path(tmp) / "chromium")
        try:
            url = view.joinpath("index.html").as_uri()
            opens = []
            for k in range(4):
                b.goto(url + f"?open={k}")
                opens.append(int(b.eval("document.body.dataset.readyMs")))
            acts = {}
            for name, script in (
                    ("jump to page 1500", ("(() => { const p = document.getElementById('pageno'); p.value = 1500; "
                                          "p.dispatchEvent(new Event('change')); })()")),
                    ("filter: truncated captions", ("(() => { const f = document.forms.filters; f.cap.value = "
                                                   "'truncated'; f.requestSubmit(); })()")),
                    ("search every text", ("(() => { const f = document.forms.filters; f.cap.value = ''; "
                                          "f.q.value = 'document 77777 about'; f.requestSubmit(); })()"))):
                t0 = time.perf_counter()
                b.act(script, timeout=300)
                acts[name] = time.perf_counter() - t0
            assert b.eval("document.getElementById('status').textContent") == f"1 of {n:,} samples"
        finally:
            b.close()
        index_mb = view.joinpath("data", "index.js").stat().st_size / 1e6
    rows = [Row("build the view", "s", build_s),
            Row("first page, first load in a fresh browser", "ms", opens[0], higher_is_better=False),
            Row("first page, best of three reloads", "ms", min(opens[1:]), higher_is_better=False)]
    rows += [Row(name, "s", s, higher_is_better=False) for name, s in acts.items()]
    write_result("bench_view", rows, libraries=(), extra={"samples": n, "index_js_mb": round(index_mb, 2),
                                                          "opens_ms": opens, "load_average_1m": os.getloadavg()[0]})


if __name__ == "__main__":
    main()
