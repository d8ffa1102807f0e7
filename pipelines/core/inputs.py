"""Input listing shared by the pipelines: files, directories, globs and list files, local or remote.

``list_inputs(["videos/", "clips/*.mp4", "list.jsonl", "https://host/a.mp4"], exts=VIDEO_EXTS)`` gives
one record per input (``stage.new_record``) with ``uri``, ``licence`` and ``meta``. A list file is a
``.txt`` (one uri per line, ``#`` comments), ``.jsonl`` (objects with ``uri`` and optional ``id``,
``licence``, ``metadata``) or ``.csv``/``.tsv`` (a header with ``uri`` and the same optional columns;
other columns go into ``meta``); relative paths in it are relative to the list file. Ids come from the
uri (``schemas.make_key``) unless given. A path that does not exist becomes a ``failed`` record, not an
exception. Remote inputs (http(s)://, s3://, gs://, any fsspec URI) are not touched while listing;
``fetch_to_temp`` downloads one with size and time limits when a stage needs the bytes.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from schemas import make_key

from pipelines.core.stage import fail, new_record

log = logging.getLogger("braid")

VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp")
LIST_EXTS = (".txt", ".jsonl", ".csv", ".tsv", ".lst")
_GLOB_CHARS = "*?["


class FetchError(Exception):
    """A remote input could not be fetched; ``kind`` is a short error kind for the manifest."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def local_path(uri: str) -> str:
    return uri.removeprefix("file://")


def input_id(uri: str) -> str:
    """The deterministic id of an input: readable stem plus a hash of the uri."""
    return make_key(uri)


def _record(uri: str, id: str | None = None, licence: str | None = None, meta: dict | None = None) -> dict:
    return new_record(id or input_id(uri), uri=uri, licence=licence, meta=meta or {})


def _missing(uri: str, message: str, id: str | None = None) -> dict:
    return fail(_record(uri, id), "input", "not_found", message)


def _want(name: str, exts: tuple[str, ...] | None) -> bool:
    return exts is None or name.lower().endswith(exts)


def _is_list(spec: str, exts: tuple[str, ...] | None) -> bool:
    return spec.lower().endswith(LIST_EXTS) and not (exts and _want(spec, exts))


def _open_text(uri: str) -> str:
    if is_remote(uri):
        import fsspec

        with fsspec.open(uri, "rt", encoding="utf-8") as f:
            return f.read()
    return Path(local_path(uri)).read_text(encoding="utf-8")


def _resolve(entry: str, base: str) -> str:
    if is_remote(entry) or entry.startswith("file://") or os.path.isabs(entry):
        return entry
    if is_remote(base):
        return base.rsplit("/", 1)[0] + "/" + entry
    return str(Path(local_path(base)).resolve().parent / entry)


def _entry(obj: dict, base: str, where: str) -> dict:
    uri = obj.get("uri") or obj.get("url") or obj.get("path")
    if not isinstance(uri, str) or not uri.strip():
        return fail(new_record(make_key(where)), "input", "bad_list_entry", f"{where}: no uri/url/path field")
    uri = _resolve(uri.strip(), base)
    meta = obj.get("metadata", obj.get("meta")) or {}
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            meta = {"metadata": meta}
    extra = {k: v for k, v in obj.items() if k not in ("uri", "url", "path", "id", "licence", "license",
                                                       "metadata", "meta") and v not in (None, "")}
    meta = {**extra, **meta} if isinstance(meta, dict) else {**extra, "metadata": meta}
    ident = obj.get("id")
    return _check(_record(uri, str(ident) if ident not in (None, "") else None,
                          obj.get("licence") or obj.get("license") or None, meta))


def _check(rec: dict) -> dict:
    """A local file that does not exist becomes a failed record now."""
    uri = rec["uri"]
    if not is_remote(uri) and not Path(local_path(uri)).is_file():
        return fail(rec, "input", "not_found", f"input file does not exist: {uri}")
    return rec


def read_list_file(uri: str) -> list[dict]:
    """Records from a ``.txt``, ``.jsonl`` or ``.csv``/``.tsv`` list file."""
    text = _open_text(uri)
    low = uri.lower()
    out = []
    if low.endswith(".jsonl"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                obj = None
            if not isinstance(obj, dict):
                out.append(fail(new_record(make_key(uri, n)), "input", "bad_list_entry",
                                f"{uri} line {n}: not a JSON object"))
                continue
            out.append(_entry(obj, uri, f"{uri} line {n}"))
    elif low.endswith((".csv", ".tsv")):
        reader = csv.DictReader(io.StringIO(text), delimiter="\t" if low.endswith(".tsv") else ",")
        for n, row in enumerate(reader, 2):
            out.append(_entry({k.strip(): v for k, v in row.items() if k}, uri, f"{uri} line {n}"))
    else:
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                out.append(_check(_record(_resolve(line, uri))))
    return out


def _expand(spec: str, exts: tuple[str, ...] | None) -> list[dict]:
    if any(c in spec for c in _GLOB_CHARS):
        if is_remote(spec):
            import fsspec

            fs, _, _ = fsspec.get_fs_token_paths(spec)
            proto = spec.split("://", 1)[0]
            found = [p if "://" in p else f"{proto}://{p}" for p in sorted(fs.glob(spec))]
        else:
            found = sorted(p for p in glob.glob(local_path(spec), recursive=True) if os.path.isfile(p))
            found = [str(Path(p).resolve()) for p in found]
        found = [p for p in found if _want(p, exts)]
        return [_record(p) for p in found] or [_missing(spec, f"no input matches the pattern {spec}")]
    if is_remote(spec):
        return read_list_file(spec) if _is_list(spec, exts) else [_record(spec)]
    path = Path(local_path(spec))
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _want(p.name, exts))
        if not files:
            return [_missing(spec, f"directory has no input files: {spec}")]
        return [_record(str(p.resolve())) for p in files]
    if not path.exists():
        return [_missing(spec, f"input path does not exist: {spec}")]
    if _is_list(spec, exts):
        return read_list_file(str(path.resolve()))
    return [_record(str(path.resolve()))]


def list_inputs(specs: list[str], exts: tuple[str, ...] | None = None) -> list[dict]:
    """One record per input, in the order given; a uri listed twice is kept once."""
    out, seen = [], set()
    for spec in specs:
        for rec in _expand(spec, exts):
            if rec["id"] in seen:
                log.info("input %s listed more than once; kept once", rec.get("uri"))
                continue
            seen.add(rec["id"])
            out.append(rec)
    return out


def fetch_to_temp(uri: str, max_bytes: int, timeout_s: float, dest_dir: str | None = None) -> Path:
    """Download ``uri`` to a new temporary file (the caller deletes it). Raises FetchError."""
    suffix = Path(uri.split("?", 1)[0]).suffix[:8]
    fd, tmp = tempfile.mkstemp(prefix="braid-fetch-", suffix=suffix, dir=dest_dir)
    deadline = time.monotonic() + timeout_s
    try:
        with os.fdopen(fd, "wb") as out:
            if uri.startswith(("http://", "https://")):
                _fetch_http(uri, out, max_bytes, timeout_s, deadline)
            else:
                _fetch_fsspec(uri, out, max_bytes, deadline)
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


def _fetch_http(uri: str, out, max_bytes: int, timeout_s: float, deadline: float) -> None:
    import httpx

    try:
        with httpx.stream("GET", uri, timeout=min(timeout_s, 30.0), follow_redirects=True) as r:
            if r.status_code != 200:
                raise FetchError(f"http_{r.status_code}", f"GET {uri} answered HTTP {r.status_code}")
            size = int(r.headers.get("content-length") or 0)
            if size > max_bytes:
                raise FetchError("too_large", f"{uri} is {size} bytes, over the {max_bytes}-byte limit")
            _copy(r.iter_bytes(1 << 20), out, uri, max_bytes, deadline)
    except httpx.TimeoutException as e:
        raise FetchError("timeout", f"GET {uri} timed out ({type(e).__name__})") from None
    except httpx.HTTPError as e:
        raise FetchError("connection_error", f"GET {uri} failed: {type(e).__name__}: {e}") from None


def _fetch_fsspec(uri: str, out, max_bytes: int, deadline: float) -> None:
    try:
        import fsspec

        with fsspec.open(uri, "rb") as f:
            _copy(iter(lambda: f.read(1 << 20), b""), out, uri, max_bytes, deadline)
    except FetchError:
        raise
    except FileNotFoundError:
        raise FetchError("not_found", f"{uri} does not exist") from None
    except ImportError as e:
        raise FetchError("unsupported_scheme", f"cannot read {uri}: {e} (install the fsspec backend)") from None
    except (OSError, ValueError) as e:
        raise FetchError("fetch_error", f"cannot read {uri}: {type(e).__name__}: {e}") from None


def _copy(chunks, out, uri: str, max_bytes: int, deadline: float) -> None:
    n = 0
    for chunk in chunks:
        n += len(chunk)
        if n > max_bytes:
            raise FetchError("too_large", f"{uri} is over the {max_bytes}-byte limit")
        if time.monotonic() > deadline:
            raise FetchError("timeout", f"fetching {uri} took longer than the time limit")
        out.write(chunk)
