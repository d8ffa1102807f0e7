"""Input listing and remote fetching: real files, a real loopback HTTP server, a closed port."""

from __future__ import annotations

import http.server
import json
import socket
import threading

import pytest
from loopback import QuietReplies

from pipelines.core.inputs import VIDEO_EXTS, FetchError, fetch_to_temp, input_id, list_inputs


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.mp4").write_bytes(b"x")
    (tmp_path / "a" / "two.mkv").write_bytes(b"y")
    (tmp_path / "a" / "notes.vtt").write_text("WEBVTT")
    (tmp_path / "a" / "deep").mkdir()
    (tmp_path / "a" / "deep" / "three.webm").write_bytes(b"z")
    return tmp_path


def test_directory_lists_video_files_recursively_in_order(tree):
    recs = list_inputs([str(tree / "a")], VIDEO_EXTS)
    names = [r["uri"].rsplit("/", 1)[-1] for r in recs]
    assert names == ["three.webm", "one.mp4", "two.mkv"]  # sorted by path: deep/ sorts before one.mp4
    assert all(r["status"] == "ok" and r["id"] == input_id(r["uri"]) for r in recs)


def test_ids_are_deterministic_and_duplicates_kept_once(tree):
    a = list_inputs([str(tree / "a" / "one.mp4"), str(tree / "a" / "*.mp4")], VIDEO_EXTS)
    b = list_inputs([str(tree / "a" / "one.mp4")], VIDEO_EXTS)
    assert len(a) == 1 and a[0]["id"] == b[0]["id"]


def test_glob_and_missing_path_become_records(tree):
    recs = list_inputs([str(tree / "a" / "**" / "*.webm"), str(tree / "nope.mp4"), str(tree / "z*.mp4")], VIDEO_EXTS)
    assert recs[0]["status"] == "ok" and recs[0]["uri"].endswith("three.webm")
    assert recs[1]["status"] == "failed" and recs[1]["error_kind"] == "not_found" and "nope.mp4" in recs[1]["message"]
    assert recs[2]["status"] == "failed" and "no input matches" in recs[2]["message"]


def test_list_files_txt_jsonl_csv(tree):
    (tree / "l.txt").write_text("# comment\na/one.mp4\n\nhttps://example.invalid/v.mp4\nmissing.mp4\n")
    (tree / "l.jsonl").write_text(
        json.dumps({"uri": "a/two.mkv", "id": "mine", "licence": "CC0", "metadata": {"lang": "en"}}) + "\n"
        + "not json\n")
    (tree / "l.csv").write_text('uri,licence,source\na/one.mp4,CC-BY-4.0,lab\n')
    txt = list_inputs([str(tree / "l.txt")], VIDEO_EXTS)
    assert [r["status"] for r in txt] == ["ok", "ok", "failed"]
    assert txt[0]["uri"] == str((tree / "a" / "one.mp4").resolve())
    assert txt[1]["uri"] == "https://example.invalid/v.mp4"  # remote: not touched while listing
    js = list_inputs([str(tree / "l.jsonl")], VIDEO_EXTS)
    assert js[0]["id"] == "mine" and js[0]["licence"] == "CC0" and js[0]["meta"] == {"lang": "en"}
    assert js[1]["status"] == "failed" and js[1]["error_kind"] == "bad_list_entry"
    cs = list_inputs([str(tree / "l.csv")], VIDEO_EXTS)
    assert cs[0]["licence"] == "CC-BY-4.0" and cs[0]["meta"] == {"source": "lab"}


class _Handler(QuietReplies, http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/video.mp4":
            self.reply(200, b"0123456789" * 1000, "video/mp4")
        else:
            self.reply(404)


@pytest.fixture(scope="module")
def http_base():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/v.mp4"


@pytest.mark.timeout(30)
def test_fetch_limits_and_errors(http_base, tmp_path):
    p = fetch_to_temp(f"{http_base}/video.mp4", 1 << 20, 10, dest_dir=str(tmp_path))
    assert p.read_bytes() == b"0123456789" * 1000 and p.suffix == ".mp4"
    p.unlink()
    with pytest.raises(FetchError) as e:
        fetch_to_temp(f"{http_base}/video.mp4", 500, 10, dest_dir=str(tmp_path))
    assert e.value.kind == "too_large"
    with pytest.raises(FetchError) as e:
        fetch_to_temp(f"{http_base}/gone.mp4", 1 << 20, 10, dest_dir=str(tmp_path))
    assert e.value.kind == "http_404" and "404" in str(e.value)
    with pytest.raises(FetchError) as e:
        fetch_to_temp(closed_port_url(), 1 << 20, 10, dest_dir=str(tmp_path))
    assert e.value.kind == "connection_error"
    assert list(tmp_path.iterdir()) == []  # failed fetches leave nothing behind


def test_fetch_fsspec_local_uri(tmp_path):
    src = tmp_path / "v.mp4"
    src.write_bytes(b"abc")
    p = fetch_to_temp(f"file://{src}", 100, 10, dest_dir=str(tmp_path / "d") if (tmp_path / "d").mkdir() is None else None)
    assert p.read_bytes() == b"abc"
    with pytest.raises(FetchError) as e:
        fetch_to_temp(f"memory://nothing/{tmp_path.name}.mp4", 100, 10)
    assert e.value.kind == "not_found"
