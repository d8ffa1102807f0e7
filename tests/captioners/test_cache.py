"""The request cache: a repeated run sends nothing finished again, and concurrent writers don't corrupt it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from captioner_helpers import jpg

from captioners import CaptionerConfig, build_request, make_captioner
from captioners.cache import CACHE_FILE, RequestCache, request_key

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(120)


def _cfg(url: str) -> CaptionerConfig:
    return CaptionerConfig(backend="openai", base_url=url, max_retries=0, concurrency=4)


@pytest.mark.timeout(60)
def test_repeated_run_sends_only_what_did_not_finish(fake_server, tmp_path):
    fake_server.reject = "number 003"
    reqs = [build_request("summarize@v1", text=f"document number {i:03d}", max_tokens=8) for i in range(10)]
    reqs.append(build_request("image_caption@v1", images=(jpg((9, 9, 9)),), context="number 999"))
    first = make_captioner(_cfg(fake_server.url), cache_dir=tmp_path)
    r1 = first.caption(reqs)
    first.close()
    assert fake_server.posts == 11 and not any(r.cached for r in r1) and r1[3].status == "error"

    fake_server.reject = None
    second = make_captioner(_cfg(fake_server.url), cache_dir=tmp_path)  # a resumed run: new process state
    r2 = second.caption(reqs)
    second.close()
    assert fake_server.posts == 12  # only the failed request went out again
    assert [r.cached for r in r2] == [i != 3 for i in range(11)]
    assert [r.text for i, r in enumerate(r2) if i != 3] == [r.text for i, r in enumerate(r1) if i != 3]
    assert r2[3].status == "ok" and (tmp_path / CACHE_FILE).exists()


def test_key_covers_model_prompt_images_and_sampling():
    base = build_request("change_caption@v1", images=(jpg((1, 1, 1)), jpg((2, 2, 2))))
    variants = [
        build_request("change_caption@v1", images=(jpg((1, 1, 1)), jpg((3, 3, 3)))),
        build_request("change_caption@v1", images=base.images, max_tokens=20),
        build_request("image_caption@v1", images=base.images[:1]),
    ]
    keys = {request_key("m", base), request_key("other-model", base), *(request_key("m", v) for v in variants)}
    assert len(keys) == 5 and request_key("m", base) == request_key("m", base)


def test_duplicates_in_one_call_are_sent_once(fake_server, tmp_path):
    cap = make_captioner(_cfg(fake_server.url), cache_dir=tmp_path)
    req = build_request("summarize@v1", text="same", max_tokens=8)
    results = cap.caption([req, req, req])
    cap.close()
    assert fake_server.posts == 1 and len({r.text for r in results}) == 1
    assert [r.cached for r in results] == [False, True, True]


_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    from captioners import CaptionerConfig, build_request, make_captioner
    go = Path(sys.argv[2])
    while not go.exists():
        time.sleep(0.01)
    cap = make_captioner(CaptionerConfig(backend="stub"), cache_dir=sys.argv[1])
    for start in range(0, 300, 3):  # many small transactions, interleaved with the other writer
        reqs = [build_request("summarize@v1", text=f"doc {i}", max_words=5) for i in range(start, start + 3)]
        assert all(r.status == "ok" for r in cap.caption(reqs))
    cap.close()
    """
)


@pytest.mark.timeout(120)
def test_two_processes_writing_at_once_keep_the_cache_whole(tmp_path):
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(go), str(ROOT)], stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    time.sleep(0.5)
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=100)
        assert p.returncode == 0, err.decode()[-2000:]
    db = sqlite3.connect(tmp_path / CACHE_FILE)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT COUNT(*) FROM captions").fetchone()[0] == 300
    db.close()
    cache = RequestCache(tmp_path / CACHE_FILE)
    stub = make_captioner(CaptionerConfig(backend="stub"))
    reqs = [build_request("summarize@v1", text=f"doc {i}", max_words=5) for i in range(300)]
    hits = cache.get_many([request_key("stub", r) for r in reqs])
    assert len(hits) == 300
    assert [hits[request_key("stub", r)].text for r in reqs] == [r.text for r in stub.caption(reqs)]
    cache.close()
