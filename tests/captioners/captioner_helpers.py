"""Helpers for the captioner tests: tiny images made here, a free port, and a scriptable OpenAI-style server."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from loopback import QuietReplies

from captioners import build_request


def jpg(color=(200, 30, 30), size=(64, 48)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png(size=(64, 48), color=(10, 120, 200)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def mixed_requests() -> list:
    """Two-frame, one-image (with and without context) and text-only requests, with different token budgets."""
    frames = [(jpg((20 * i, 40, 90)), jpg((90, 20 * i, 40))) for i in range(5)]
    # the tiny model answers in about 10 tokens: a budget of 30 ends ok, one of 4 is cut (truncated)
    reqs = [build_request("change_caption@v1", images=f, max_tokens=30 if i % 2 else 4) for i, f in enumerate(frames)]
    reqs += [
        build_request("image_caption@v1", images=(jpg((5, 5, 5), size=(96, 64)),), max_tokens=8),
        build_request("image_caption@v1", images=(png((64, 64)),), context="Step 2: loosen the nuts.", max_tokens=8),
        build_request("topic_label@v1", text="How to change a bicycle tyre in five steps"),
        build_request("summarize@v1", text="A short text about bread.", max_words=10, max_tokens=8),
    ]
    return reqs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeOpenAI:
    """A real HTTP/1.1 server on loopback speaking enough of the chat-completions API.

    Its reply echoes the last line of the request's text, so tests can check result order.
    Behaviour knobs (set before or during a test): ``fail_first`` status codes returned to the first
    requests, ``delay_s`` before each answer, ``die_after`` requests after which it stops
    listening and drops every open connection, ``malformed`` (``"json"`` or ``"shape"``),
    ``reject`` (a substring of the request text answered with HTTP 400), ``finish_reason``.
    """

    def __init__(self):
        self.fail_first: list[int] = []
        self.delay_s = 0.0
        self.die_after: int | None = None
        self.malformed: str | None = None
        self.reject: str | None = None
        self.finish_reason = "stop"
        self.posts = 0
        self.answered = 0
        self.inflight = 0
        self.max_inflight = 0
        self.peers: set = set()
        self.dead = False
        self._lock = threading.Lock()
        fake = self

        class Handler(QuietReplies, BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            content_type = "application/json"

            def _drop(self):
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            def do_GET(self):
                if fake.dead:
                    return self._drop()
                if self.path.rstrip("/") == "/v1/models":
                    return self.reply(200, json.dumps({"object": "list", "data": [{"id": "fake-vlm"}]}).encode())
                self.reply(404, b'{"error": "not found"}')

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with fake._lock:
                    if fake.dead:
                        return self._drop()
                    fake.posts += 1
                    fake.peers.add(self.client_address)
                    fake.inflight += 1
                    fake.max_inflight = max(fake.max_inflight, fake.inflight)
                    code = fake.fail_first.pop(0) if fake.fail_first else 200
                    dying = fake.die_after is not None and fake.posts > fake.die_after
                    if dying:
                        fake.dead = True
                try:
                    if dying:
                        threading.Thread(target=fake._stop_listening, daemon=True).start()
                        return self._drop()
                    if fake.delay_s:
                        time.sleep(fake.delay_s)
                    if code != 200:
                        return self.reply(code, b'{"error": {"message": "try later"}}', headers=[("Retry-After", "0")])
                    payload = json.loads(body)
                    text = payload["messages"][-1]["content"][-1]["text"]
                    if fake.reject and fake.reject in text:
                        return self.reply(400, b'{"error": {"message": "image rejected"}}')
                    if fake.malformed == "json":
                        return self.reply(200, b"<html>502 bad gateway</html>", ctype="text/html")
                    reply = {
                        "choices": [
                            {
                                "message": {"role": "assistant", "content": "re: " + text.splitlines()[-1]},
                                "finish_reason": fake.finish_reason,
                            }
                        ],
                        "usage": {"prompt_tokens": len(text.split()), "completion_tokens": 3},
                    }
                    if fake.malformed == "shape":
                        reply = {"choices": []}
                    with fake._lock:
                        fake.answered += 1
                    self.reply(200, json.dumps(reply).encode())
                finally:
                    with fake._lock:
                        fake.inflight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def _stop_listening(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def close(self):
        if not self.dead:
            self.dead = True
            self._stop_listening()
