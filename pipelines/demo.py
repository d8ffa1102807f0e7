"""``make demo``: every pipeline end to end on examples generated here, fully offline.

Generates a few short videos and tutorial-style web pages, builds a tiny random-weight VLM, runs
``braid video``, ``braid web`` (pages served on loopback) and ``braid reason``, validates the shards,
renders a view page, trains the tiny MoT for a few dozen steps and writes a spot-check report.
The captions come from a random-weight model: they show the plumbing, not caption quality.
"""

from __future__ import annotations

import functools
import http.server
import json
import sys
import threading
import time
from pathlib import Path

from pipelines.commands.cli import main as braid

BANNER = """
NOTE: the demo's captions come from a random-weight tiny model built offline, so they are
gibberish by design. For real captions, serve a VLM and point Braid at it, for example:
    vllm serve Qwen/Qwen2.5-VL-7B-Instruct --port 8000
    braid video VIDEOS/ --out OUT --captioner openai --base-url http://localhost:8000/v1 \\
        --model Qwen/Qwen2.5-VL-7B-Instruct
"""


def step(command: str, argv: list[str]) -> None:
    print(f"\n== braid {command} {' '.join(argv)}", flush=True)
    t0 = time.time()
    rc = braid([command, *argv])
    if rc != 0:
        sys.exit(f"demo step 'braid {command}' failed with exit code {rc}")
    print(f"   ({time.time() - t0:.1f} s)", flush=True)


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class _Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128  # the fetcher opens many connections at once
    daemon_threads = True


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def shards(out: Path) -> list[str]:
    return sorted(str(p) for p in out.glob("*.tar"))


def main(argv: list[str]) -> int:
    from captioners.tiny import make_tiny_vlm
    from pipelines.video_interleave.synth import demo_set
    from pipelines.web_interleave.synth import make_example_pages

    root = Path(argv[0] if argv else "demo_out").resolve()
    root.mkdir(parents=True, exist_ok=True)
    print(f"Braid demo: writing everything under {root}")
    vlm = root / "tiny-vlm"
    if not (vlm / "config.json").exists():
        make_tiny_vlm(vlm)
    cap = ["--captioner", "hf", "--model", str(vlm)]

    videos = demo_set(root / "videos")
    print(f"generated {len(videos)} example videos in {root / 'videos'}")
    step("video", [str(root / "videos"), "--out", str(root / "video"), *cap])

    pages = make_example_pages(root / "pages")
    server, base = serve(root / "pages")
    try:
        urls = [f"{base}/{p.relative_to(root / 'pages').as_posix()}" for p in pages]
        print(f"serving {len(urls)} example pages on {base}")
        # random-weight captions have nothing to do with the text around them, so the relevance
        # filter would drop every image: the demo records relevance scores without filtering on them
        step("web", [*urls, "--out", str(root / "web"), "--allow-private-net", "--set", "filters.min_relevance=null",
                     *cap])
    finally:
        server.shutdown()

    step("reason", [str(root / "video"), str(root / "web"), "--out", str(root / "reason"),
                    "--kinds", "t2i,edit,concept", *cap])

    all_shards = shards(root / "video") + shards(root / "web") + shards(root / "reason")
    step("validate", all_shards)
    step("view", [str(root / "video"), str(root / "web"), str(root / "reason"), "--out", str(root / "view")])
    train_shards = shards(root / "video") + shards(root / "web")
    step("train", [*train_shards, "--out", str(root / "run"), "--config", "tiny", "--steps", "40"])
    step("spotcheck", [*all_shards, "--checkpoint", str(root / "run"), "--n", "8",
                       "--steps", "10", "--out", str(root / "spotcheck.html"), "--seed", "0"])

    print("\n== summaries")
    for name in ("video", "web", "reason"):
        s = json.loads((root / name / "summary.json").read_text())
        print(f"{name:7s} inputs={s['inputs']} written={s['written']} filtered={s['filtered']} failed={s['failed']} "
              f"samples={s.get('samples_written')} by_reason={s.get('by_reason')}")
        for kind, k in s.get("kinds", {}).items():  # reason: every input of each generator accounted for
            print(f"  {kind:7s} records={k['records']} written={k['written']} filtered={k['filtered']} "
                  f"failed={k['failed']} by_reason={k['by_reason']} by_error_kind={k['by_error_kind']}")
    print(f"\nviewer:           {root / 'view' / 'index.html'}")
    print(f"loss curve:       {root / 'run' / 'loss.png'}")
    print(f"spot-check:       {root / 'spotcheck.html'}")
    print(BANNER)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
