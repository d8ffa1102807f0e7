"""Remote inputs go through the guarded download path: real loopback HTTP server, real temp files."""

from __future__ import annotations

import http.server
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest
from loopback import QuietReplies

from pipelines.net.download import DownloadError, download_bytes, download_to_temp
from pipelines.net.fetch import FetchConfig

BODY = b"0123456789" * 1000


class _Handler(QuietReplies, http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        p = self.path
        if p.startswith("/video.mp4"):  # also with a query, as signed URLs have
            return self.reply(200, BODY, "video/mp4")
        if p == "/to-video":
            return self.reply(302, headers=[("Location", "/video.mp4")])
        if p == "/to-meta":
            return self.reply(302, headers=[("Location", "http://169.254.169.254/latest/meta-data/")])
        if p == "/to-numeric":
            return self.reply(302, headers=[("Location", "http://2130706433/video.mp4")])
        if p == "/trickle.mp4":  # a byte a second, forever: only an overall deadline ends it
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(100_000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(1.0)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return None
        return self.reply(404)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


@pytest.fixture(scope="module")
def base():
    srv = _Server(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def lan(**kw) -> FetchConfig:
    return FetchConfig(**{"allow_private_net": True, "retries": 0, "timeout_s": 5.0, **kw})


def braid_temps() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("braid-fetch-*")}


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.timeout(60)
def test_download_follows_redirects_and_keeps_signed_url_queries(base, tmp_path):
    p = download_to_temp(f"{base}/to-video", 1 << 20, 10, lan(), dest_dir=str(tmp_path))
    assert p.read_bytes() == BODY
    p.unlink()
    signed = f"{base}/video.mp4?X-Amz-Signature=abc%2Fdef&X-Amz-Expires=60"
    p = download_to_temp(signed, 1 << 20, 10, lan(), dest_dir=str(tmp_path))
    assert p.read_bytes() == BODY and p.suffix == ".mp4"
    p.unlink()
    assert download_bytes(f"{base}/video.mp4", lan()) == BODY
    assert list(tmp_path.iterdir()) == []


@pytest.mark.timeout(60)
def test_refused_addresses_after_dns_and_after_every_redirect(base, tmp_path):
    port = base.rsplit(":", 1)[1]
    cases = {
        f"{base}/video.mp4": FetchConfig(retries=0),  # loopback without allow_private_net
        f"http://localhost:{port}/video.mp4": FetchConfig(retries=0),  # a name that resolves to loopback
        f"{base}/to-meta": lan(),  # metadata stays refused even with allow_private_net
        f"{base}/to-numeric": lan(),  # 2130706433 is 127.0.0.1 in disguise
    }
    for url, cfg in cases.items():
        with pytest.raises(DownloadError) as e:
            download_to_temp(url, 1 << 20, 10, cfg, dest_dir=str(tmp_path))
        assert e.value.kind == "refused_address", (url, e.value)
    with pytest.raises(DownloadError) as e:
        download_to_temp(f"{base}/video.mp4", 1 << 20, 10, FetchConfig(retries=0), dest_dir=str(tmp_path))
    assert "--allow-private-net" in str(e.value) and "fetch.allow_private_net=true" in str(e.value)
    assert list(tmp_path.iterdir()) == []  # refused downloads leave nothing behind


@pytest.mark.timeout(60)
def test_a_trickling_server_ends_at_the_time_limit(base, tmp_path):
    before = braid_temps()
    t0 = time.monotonic()
    with pytest.raises(DownloadError) as e:
        download_to_temp(f"{base}/trickle.mp4", 1 << 20, 2.0, lan(timeout_s=30.0, retries=3))
    took = time.monotonic() - t0
    assert e.value.kind == "timeout" and "2 s" in str(e.value)
    assert took < 4.0, took
    assert braid_temps() == before  # the temp file is gone


@pytest.mark.timeout(60)
def test_size_cap_http_errors_and_closed_ports_leave_no_temp_files(base, tmp_path):
    d = str(tmp_path)
    for url, cap, kind in ((f"{base}/video.mp4", 500, "too_large"), (f"{base}/gone.mp4", 1 << 20, "http_404"),
                           (f"http://127.0.0.1:{closed_port()}/v.mp4", 1 << 20, "connection_error")):
        with pytest.raises(DownloadError) as e:
            download_to_temp(url, cap, 10, lan(), dest_dir=d)
        assert e.value.kind == kind, (url, e.value)
    assert os.listdir(d) == []


def test_fsspec_sources_local_memory_and_refused_chains(tmp_path):
    src = tmp_path / "v.mp4"
    src.write_bytes(b"abc")
    p = download_to_temp(f"file://{src}", 100, 10)
    assert p.read_bytes() == b"abc"
    p.unlink()
    with pytest.raises(DownloadError) as e:
        download_to_temp(f"memory://nothing/{tmp_path.name}.mp4", 100, 10)
    assert e.value.kind == "not_found"
    with pytest.raises(DownloadError) as e:
        download_to_temp(f"file://{src}", 2, 10)
    assert e.value.kind == "too_large"
    with pytest.raises(DownloadError) as e:  # fsspec's own http would bypass the address guard
        download_to_temp("simplecache::http://127.0.0.1:9/v.mp4", 100, 10)
    assert e.value.kind == "bad_url"
    with pytest.raises(DownloadError) as e:
        download_to_temp("ftp://127.1/v.mp4", 100, 10, lan())
    assert e.value.kind == "refused_address"
