"""pipelines.net.fetch against a real HTTP server on loopback: every outcome, address refusal, SVG, reuse."""

from __future__ import annotations

import base64
import http.server
import io
import threading
import time
from typing import ClassVar

import pytest
from loopback import QuietReplies
from PIL import Image

from pipelines.net.fetch import FetchConfig, Fetcher, robots_forbid
from pipelines.net.image_decode import decode_image
from pipelines.net.netguard import address_refusal
from schemas.config import ConfigError

SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="300" height="200">'
       b'<script>fetch("/x/hit")</script><rect width="300" height="200" fill="red"/>'
       b'<image xlink:href="/x/hit" width="10" height="10"/></svg>')


def jpeg(size=(320, 240), color=(20, 120, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


class H(QuietReplies, http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is visible
    content_type = "image/jpeg"
    hits: ClassVar[list] = []
    peers: ClassVar[set] = set()

    def do_GET(self):
        H.hits.append(self.path)
        H.peers.add(self.client_address)
        p = self.path
        if p.startswith("/img/"):
            return self.reply(200, jpeg())
        if p == "/svg":
            return self.reply(200, SVG, "image/svg+xml")
        if p == "/500":
            return self.reply(500, b"no")
        if p == "/slow":
            time.sleep(3)
            return self.reply(200, jpeg())
        if p == "/big":
            return self.reply(200, b"\xff" * 300_000)
        if p == "/html-as-jpeg":
            return self.reply(200, b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>nope</body></html>")
        if p == "/loop":
            return self.reply(302, headers=[("Location", "/loop")])
        if p == "/to-meta":
            return self.reply(302, headers=[("Location", "http://169.254.169.254/latest/")])
        if p == "/to-img":
            return self.reply(307, headers=[("Location", "/img/a")])
        if p == "/noai":
            return self.reply(200, jpeg(), headers=[("X-Robots-Tag", "otherbot: noindex"), ("X-Robots-Tag", "noimageai")])
        if p == "/gif":
            buf = io.BytesIO()
            Image.new("P", (200, 200)).save(buf, "GIF")
            return self.reply(200, buf.getvalue(), "image/gif")
        return self.reply(404, b"")


class BacklogServer(http.server.ThreadingHTTPServer):
    request_queue_size = 128  # many connections at once; the default backlog of 5 drops SYNs (1 s retries)
    daemon_threads = True


@pytest.fixture(scope="module")
def server():
    srv = BacklogServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def cfg(**kw) -> FetchConfig:
    base = {"timeout_s": 1.0, "connect_timeout_s": 1.0, "retries": 1, "backoff_s": 0.01, "max_bytes": 200_000,
            "allow_private_net": True}
    return FetchConfig(**{**base, **kw})


@pytest.mark.timeout(60)
def test_every_fetch_ends_in_its_outcome(server):
    cases = {"/img/a": "ok", "/nope": "http_404", "/500": "http_500", "/slow": "timeout", "/big": "too_large",
             "/html-as-jpeg": "not_an_image", "/loop": "too_many_redirects", "/to-meta": "refused_address",
             "/to-img": "ok", "/noai": "robots", "/gif": "ok", "/svg": "ok"}
    with Fetcher(cfg()) as f:
        res = f.fetch([server + p for p in cases])
    got = {p: r.outcome for p, r in zip(cases, res)}
    assert got == cases
    by = dict(zip(cases, res))
    assert by["/500"].attempts == 2 and by["/nope"].attempts == 1  # retried only what may heal
    assert by["/to-img"].final_url.endswith("/img/a") and by["/to-img"].redirects == 1
    assert by["/gif"].ext == "png" and by["/svg"].ext == "png" and (by["/svg"].width, by["/svg"].height) == (300, 200)
    assert by["/img/a"].ext == "jpg" and by["/img/a"].data[:2] == b"\xff\xd8"
    assert "/x/hit" not in H.hits  # the SVG's script and external image were never run or fetched
    assert "HTML page" in by["/html-as-jpeg"].detail, by["/html-as-jpeg"].detail
    assert all("outcome" in r.record() and "data" not in r.record() for r in res)


@pytest.mark.timeout(30)
def test_private_addresses_refused_unless_allowed(server):
    port = server.rsplit(":", 1)[1]
    with Fetcher(cfg(allow_private_net=False, retries=0)) as f:
        res = f.fetch([f"{server}/img/a", f"http://localhost:{port}/img/a", "http://[::1]:1/x", "http://10.1.2.3/x",
                       "ftp://example.org/x.jpg"])
    assert [r.outcome for r in res] == ["refused_address"] * 4 + ["bad_url"]
    assert "loopback" in res[1].detail and "localhost" in res[1].detail  # checked after DNS resolution
    for r in res[:4]:  # the reason names the way to allow it
        assert "--allow-private-net" in r.detail and "--set fetch.allow_private_net=true" in r.detail, r.detail
    assert address_refusal("169.254.169.254", allow_private=True) is not None  # metadata: always refused
    assert address_refusal("::ffff:127.0.0.1", allow_private=False) is not None
    assert address_refusal("93.184.216.34", allow_private=False) is None


@pytest.mark.timeout(30)
def test_connections_are_reused(server):
    H.peers.clear()
    with Fetcher(cfg(concurrency=4, per_host=4)) as f:
        res = f.fetch([f"{server}/img/{i}" for i in range(40)])
    assert all(r.ok for r in res)
    assert len(H.peers) <= 4  # 40 requests over at most 4 connections


def test_data_uris_local_files_and_svg_policy(tmp_path):
    data = "data:image/jpeg;base64," + base64.b64encode(jpeg()).decode()
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.jpg").write_bytes(jpeg())
    (tmp_path / "secret.jpg").write_bytes(jpeg())
    with Fetcher(cfg()) as f:
        res = f.fetch([data, (tmp_path / "site" / "a.jpg").as_uri(), (tmp_path / "secret.jpg").as_uri(),
                       (tmp_path / "site" / "none.jpg").as_uri(), "data:image/png;base64,!!!!"],
                      local_root=str(tmp_path / "site"))
    assert [r.outcome for r in res] == ["ok", "ok", "outside_local_root", "file_missing", "not_an_image"]
    with pytest.raises(Exception) as e:
        decode_image(SVG, cfg(svg="reject"))
    assert getattr(e.value, "outcome", "") == "svg_rejected"


def test_decompression_bomb_is_refused_from_the_header():
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 50000, 50000, 1, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    t = time.perf_counter()
    with pytest.raises(Exception) as e:
        decode_image(png, cfg())
    assert getattr(e.value, "outcome", "") == "pixel_cap" and time.perf_counter() - t < 1.0


def test_robots_header_parsing_and_bad_config():
    assert robots_forbid(["noai, noindex"], ("noai", "noimageai"), "braid/0.1") == "noai"
    assert robots_forbid(["googlebot: noai"], ("noai",), "braid/0.1") is None
    assert robots_forbid(["braid: noimageai"], ("noimageai",), "braid/0.1") == "noimageai"
    assert robots_forbid(["index, follow"], ("noai",), "braid/0.1") is None
    with pytest.raises(ValueError):
        FetchConfig(svg="execute")
    assert issubclass(ConfigError, ValueError)


def use_bomb(levels: int = 9, fan: int = 10) -> bytes:
    """A few KB of SVG whose ``<use>`` elements each repeat the group before ``fan`` times: fan**levels rects."""
    parts = [('<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="100" '
              'height="100"><defs><g id="a0"><rect width="1" height="1" fill="red"/></g>')]
    for i in range(1, levels):
        parts.append(f'<g id="a{i}">' + "".join(f'<use xlink:href="#a{i - 1}"/>' for _ in range(fan)) + "</g>")
    parts.append(f'</defs><use xlink:href="#a{levels - 1}"/></svg>')
    return "".join(parts).encode()


@pytest.mark.timeout(120)
def test_svg_bomb_ends_within_the_time_limit_and_others_go_on():
    import resource

    bomb = use_bomb()
    assert len(bomb) < 4000
    urls = ["data:image/svg+xml;base64," + base64.b64encode(bomb).decode(),
            "data:image/svg+xml;base64," + base64.b64encode(SVG).decode(),
            "data:image/jpeg;base64," + base64.b64encode(jpeg()).decode()]
    with Fetcher(cfg(timeout_s=2.0)) as f:
        f.fetch([urls[1]])  # the rasteriser is started and warm, as it is in a run
        before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        res = f.fetch(urls)
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for a, b in zip(after, before))
    assert [r.outcome for r in res] == ["decode_limit", "ok", "ok"], [(r.outcome, r.detail) for r in res]
    assert "2 s" in res[0].detail
    assert wall < 4.0 and cpu < 5.0, (wall, cpu)
    assert (res[1].width, res[1].height) == (300, 200)  # the next SVG renders in a fresh child
