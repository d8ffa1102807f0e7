"""A caption server that answers 503 and then recovers: the first run records retryable failures, the next
run retries them, and the output ends with the same samples, byte for byte, as a clean run."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from braid_cli import braid, shard_members
from loopback import QuietReplies


class FlakyVLM:
    """An OpenAI-compatible chat server on loopback: 503 while ``down``, else a caption made from the request."""

    def __init__(self):
        self.down = True
        self.posts = 0
        srv = self

        class Handler(QuietReplies, BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            content_type = "application/json"

            def do_GET(self):
                if self.path.rstrip("/") == "/v1/models":
                    return self.reply(200, json.dumps({"data": [{"id": "flaky-vlm"}]}).encode())
                self.reply(404, b"{}")

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                srv.posts += 1
                if srv.down:
                    return self.reply(503, b'{"error": {"message": "overloaded"}}')
                n_images = sum(1 for part in body["messages"][-1]["content"] if part.get("type") == "image_url")
                text = f"the scene shifts across {n_images} frames"
                self.reply(200, json.dumps({"choices": [{"message": {"role": "assistant", "content": text},
                                                         "finish_reason": "stop"}],
                                            "usage": {"prompt_tokens": 10, "completion_tokens": 6}}).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def flaky():
    srv = FlakyVLM()
    yield srv
    srv.close()


def _inputs(name: str, root: Path) -> list[str]:
    if name == "video":
        from pipelines.video_interleave.synth import Scene, write_scenes

        vids = root / "videos"
        write_scenes(vids / "a.mp4", [Scene("moving", 48, 1), Scene("pan", 48, 2)], 24.0, (256, 144))
        write_scenes(vids / "b.mp4", [Scene("moving", 48, 3)], 24.0, (256, 144))
        return [str(vids)]
    from pipelines.web_interleave.synth import make_example_pages

    pages = make_example_pages(root / "pages", n_pages=2)
    return [str(p) for p in pages] + ["--set", "filters.min_relevance=null", "--set", "text.summarize=false"]


@pytest.mark.parametrize("name", ["video", "web"])
def test_503_then_recovery_retries_to_the_bytes_of_a_clean_run(name, flaky, tmp_path):
    args = [name, *_inputs(name, tmp_path), "--preset", "tiny", "--captioner", "openai", "--base-url", flaky.url,
            "--model", "flaky-vlm", "--set", "captioner.max_retries=0", "--set", "captioner.retry_backoff_s=0"]
    out = tmp_path / "out"
    code, text, _ = braid(*args, "--out", str(out))
    assert code == 1 and flaky.posts > 0, text  # every input failed while the server was down
    failed = [json.loads(x) for p in (out / "manifest").glob("*.jsonl") for x in p.read_text().splitlines()
              if '"failed"' in x]
    assert failed and all(r["retryable"] and "503" in r["message"] for r in failed)
    assert not shard_members(out)

    flaky.down = False
    code, text, _ = braid(*args, "--out", str(out))
    assert code == 0, text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["retried_inputs"] == 2 and summary["failed"] == 0 and summary["written"] == 2

    clean = tmp_path / "clean"
    assert braid(*args, "--out", str(clean))[0] == 0
    assert shard_members(out) == shard_members(clean) and shard_members(clean)
