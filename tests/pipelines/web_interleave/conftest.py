"""A real HTTP server on loopback for the web pipeline: the shared real pages and generated fault cases."""

from __future__ import annotations

import http.server
import threading
import time
import zlib
from pathlib import Path
from typing import ClassVar

import pytest
from loopback import QuietReplies

from pipelines.web_interleave.synth import drawing, make_example_pages, page_html

SLOW_S = 15.0  # the tests' fetch timeout is 6 s: a loaded 2-core CI box still tells slow from fine


def bomb_png(side: int = 30000) -> bytes:
    """A real PNG of side x side 1-bit pixels, all zero: ~100 KB on disk, 900 megapixels decoded."""
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp, row = zlib.compressobj(9), b"\0" * (1 + side // 8)
    idat = b"".join(comp.compress(row * 1000) for _ in range(side // 1000)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


class BacklogServer(http.server.ThreadingHTTPServer):
    # the fetcher opens dozens of connections at once; the default listen backlog of 5 drops SYNs,
    # and the kernel's 1 s / 3 s SYN retries would then look like slow images
    request_queue_size = 128
    daemon_threads = True


class Handler(QuietReplies, http.server.SimpleHTTPRequestHandler):
    content_type = "image/jpeg"
    routes: ClassVar[dict] = {}
    docs_root: Path | None = None
    gen_root: Path | None = None

    def translate_path(self, path):
        path = path.split("?", 1)[0]
        if path.startswith("/docs/") and self.docs_root:
            return str(self.docs_root / path[len("/docs/"):])
        if path.startswith("/gen/") and self.gen_root:
            return str(self.gen_root / path[len("/gen/"):])
        return "/nonexistent"

    def do_GET(self):
        p = self.path
        if p == "/x/404.jpg":
            return self.reply(404, b"")
        if p == "/x/500.jpg":
            return self.reply(500, b"")
        if p == "/x/slow.jpg":
            time.sleep(SLOW_S)
            return self.reply(200, drawing(7))
        if p == "/x/huge.jpg":  # no Content-Length: the cap must hold while streaming
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            try:
                for _ in range(64):
                    self.wfile.write(b"\xff" * (64 << 10))
            except (BrokenPipeError, ConnectionResetError):
                pass
            return None
        if p == "/x/fake.jpg":
            return self.reply(200, b"<html>this is not an image</html>" * 20)
        if p == "/x/bomb.png":
            return self.reply(200, self.routes["bomb"], "image/png")
        if p == "/x/loop.jpg":
            return self.reply(302, b"", headers=[("Location", "/x/loop.jpg")])
        if p == "/x/meta.jpg":
            return self.reply(302, b"", headers=[("Location", "http://169.254.169.254/latest/meta-data/")])
        if p == "/x/noai.jpg":
            return self.reply(200, drawing(8), headers=[("X-Robots-Tag", "noai, noimageai")])
        if p == "/x/moved.jpg":
            return self.reply(301, b"", headers=[("Location", "/x/good.jpg")])
        if p == "/x/good.jpg" or p.startswith("/x/icons/"):
            return self.reply(200, drawing(9))
        return super().do_GET()


@pytest.fixture(scope="session")
def gen_site(tmp_path_factory) -> Path:
    """Generated pages: good tutorials, a page of fault cases, a page left with two images."""
    root = tmp_path_factory.mktemp("site")
    make_example_pages(root / "good", n_pages=3)
    title, steps = "How to sharpen a kitchen knife", ["Soak the whetstone.", "Hold the blade at twenty degrees.",
                                                      "Draw the blade across the stone.", "Hone and rinse."]
    faults = ["/x/404.jpg", "/x/500.jpg", "/x/slow.jpg", "/x/huge.jpg", "/x/fake.jpg", "/x/bomb.png", "/x/loop.jpg",
              "/x/meta.jpg", "/x/noai.jpg", "/x/icons/knife.jpg"]
    (root / "faults").mkdir()
    (root / "faults" / "index.html").write_text(page_html(title, steps, faults[:4], faults[4:]))
    (root / "two").mkdir()
    for i in range(2):
        (root / "two" / f"{i}.jpg").write_bytes(drawing(500 + i))
    (root / "two" / "index.html").write_text(page_html("How to fold a napkin", ["Fold it.", "Fold it again."],
                                                       ["0.jpg", "1.jpg"]))
    (root / "docimg").mkdir()
    for i in range(8):  # images of the OmniCorpus / OBELICS documents (distinct from the pages' images)
        (root / "docimg" / f"{i}.jpg").write_bytes(drawing(700 + i))
    return root


@pytest.fixture(scope="session")
def web_server(gen_site):
    """Base URL of a threaded HTTP server on 127.0.0.1 serving /gen/, /docs/ (shared data, if present) and /x/."""
    docs = Path(__file__).resolve().parents[4] / "shared" / "data" / "docs"
    handler = type("H", (Handler,), {"routes": {"bomb": bomb_png()}, "gen_root": gen_site,
                                     "docs_root": docs if docs.is_dir() else None})
    srv = BacklogServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()
