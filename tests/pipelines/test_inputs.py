"""Input listing: real files and folders, list files with bad lines, URLs with queries, a remote list file."""

from __future__ import annotations

import http.server
import json
import threading

import pytest
from loopback import QuietReplies

from pipelines.core.inputs import VIDEO_EXTS, input_id, list_inputs
from pipelines.net.download import download_bytes
from pipelines.net.fetch import FetchConfig


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


def test_signed_urls_are_inputs_not_globs(tree):
    signed = ("https://bucket.s3.amazonaws.com/clips/a.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256"
              "&X-Amz-Signature=0f3a&X-Amz-Expires=3600")
    plain = "http://example.invalid/b.mp4?download=1"
    recs = list_inputs([signed, plain], VIDEO_EXTS)
    assert [r["status"] for r in recs] == ["ok", "ok"] and [r["uri"] for r in recs] == [signed, plain]
    (tree / "l.txt").write_text(signed + "\n")
    assert [r["uri"] for r in list_inputs([str(tree / "l.txt")], VIDEO_EXTS)] == [signed]
    # a local file whose name holds a glob character is that file
    (tree / "what?.mp4").write_bytes(b"x")
    recs = list_inputs([str(tree / "what?.mp4")], VIDEO_EXTS)
    assert len(recs) == 1 and recs[0]["status"] == "ok" and recs[0]["uri"].endswith("what?.mp4")


def test_an_empty_input_name_fails_and_scans_nothing(tree, monkeypatch):
    monkeypatch.chdir(tree / "a")  # holds videos that an empty name must not pick up
    for spec in ("", "  "):
        recs = list_inputs([spec], VIDEO_EXTS)
        assert len(recs) == 1 and recs[0]["status"] == "failed" and recs[0]["error_kind"] == "not_found"
        assert "empty input" in recs[0]["message"]


def test_a_bad_byte_fails_its_line_alone(tree):
    bad = b"\xff\xfebad.mp4"
    (tree / "l.txt").write_bytes(b"a/one.mp4\n" + bad + b"\na/two.mkv\n")
    (tree / "l.jsonl").write_bytes(b'{"uri": "a/one.mp4"}\n{"uri": "' + bad + b'"}\n{"uri": "a/two.mkv"}\n'
                                   + '{"uri": "a/deep/three.webm", "title": "a\u2028b"}\n'.encode())
    (tree / "l.csv").write_bytes(b"uri,title\na/one.mp4,x\n" + bad + b",y\na/two.mkv,z\n")
    for name, n_good, line in (("l.txt", 2, 2), ("l.jsonl", 3, 2), ("l.csv", 2, 3)):
        recs = list_inputs([str(tree / name)], VIDEO_EXTS)
        assert [r["status"] for r in recs].count("ok") == n_good, (name, recs)
        failed = [r for r in recs if r["status"] == "failed"]
        assert len(failed) == 1 and failed[0]["error_kind"] == "bad_list_entry", (name, failed)
        assert f"line {line}:" in failed[0]["message"] and "UTF-8" in failed[0]["message"], failed[0]["message"]
    js = list_inputs([str(tree / "l.jsonl")], VIDEO_EXTS)
    assert js[-1]["meta"] == {"title": "a\u2028b"}  # U+2028 inside a JSON string is not a line break


def test_an_unreadable_list_file_fails_alone(tree):
    (tree / "l.txt").mkdir()  # a list file name that cannot be read as a file
    recs = list_inputs([str(tree / "l.txt"), str(tree / "a" / "one.mp4")], VIDEO_EXTS)
    assert [r["status"] for r in recs] == ["failed", "ok"]


class _Lists(QuietReplies, http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/list.txt"):
            self.reply(200, b"v/a.mp4\nhttps://example.invalid/b.mp4\n", "text/plain")
        else:
            self.reply(404)


@pytest.fixture(scope="module")
def http_base():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Lists)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.mark.timeout(60)
def test_remote_list_files_go_through_the_guarded_reader(http_base):
    url = f"{http_base}/list.txt?sig=abc"
    lan = FetchConfig(allow_private_net=True, retries=0, svg="reject")
    recs = list_inputs([url], VIDEO_EXTS, read_remote=lambda u: download_bytes(u, lan))
    assert [r["uri"] for r in recs] == [f"{http_base}/v/a.mp4", "https://example.invalid/b.mp4"]
    refused = list_inputs([url], VIDEO_EXTS, read_remote=download_bytes)  # default settings: loopback refused
    unguarded = list_inputs([url], VIDEO_EXTS)  # no guarded reader given: core does not fetch by itself
    assert unguarded[0]["status"] == "failed" and "guarded downloader" in unguarded[0]["message"]
    assert len(refused) == 1 and refused[0]["status"] == "failed" and refused[0]["error_kind"] == "unreadable"
    assert "refused_address" in refused[0]["message"]
