"""Input listing shared by the pipelines: files, directories, globs and list files, local or remote.

``list_inputs(["videos/", "clips/*.mp4", "list.jsonl", "https://host/a.mp4"], exts=VIDEO_EXTS)`` gives
one record per input (``stage.new_record``) with ``uri``, ``licence`` and ``meta``. A list file is a
``.txt`` (one uri per line, ``#`` comments), ``.jsonl`` (objects with ``uri`` and optional ``id``,
``licence``, ``metadata``) or ``.csv``/``.tsv`` (a header with ``uri`` and the same optional columns;
other columns go into ``meta``); relative paths in it are relative to the list file. Ids come from the
uri (``schemas.make_key``) unless given.

Bad inputs become ``failed`` records, never exceptions, each alone: a path that does not exist
(``not_found``), an empty input name (``not_found``), a list file that cannot be read (``unreadable``),
a list line that is not UTF-8, not a JSON object or has no uri (``bad_list_entry``; the other lines
still count). ``*``, ``?`` and ``[`` make a local path or a non-HTTP URI a glob, unless a file of that
exact name exists; an http(s) URL is never a glob, as ``?`` starts its query (signed S3/HTTP URLs).

Remote inputs (http(s)://, s3://, gs://, any fsspec URI) are not touched while listing; a stage
downloads one when it needs the bytes (``pipelines.net.download``). Remote list files are read while
listing, through ``read_remote(uri) -> bytes`` (the pipelines pass the guarded downloader); without it an http(s)
list file fails and other schemes are read through fsspec.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import logging
import os
import re
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from pipelines.core.stage import fail, new_record
from schemas import make_key

log = logging.getLogger("braid")

VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp")
LIST_EXTS = (".txt", ".jsonl", ".csv", ".tsv", ".lst")
LIST_FILE_MAX_BYTES = 1 << 30
_GLOB_CHARS = "*?["
_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by ``surrogateescape``

ReadRemote = Callable[[str], bytes]


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def is_http(uri: str) -> bool:
    return uri[:8].lower().startswith(("http://", "https://"))


def local_path(uri: str) -> str:
    return uri.removeprefix("file://")


def input_id(uri: str) -> str:
    """The deterministic id of an input: readable stem plus a hash of the uri."""
    return make_key(uri)


def _record(uri: str, id: str | None = None, licence: str | None = None, meta: dict | None = None) -> dict:
    return new_record(id or input_id(uri), uri=uri, licence=licence, meta=meta or {})


def _missing(uri: str, message: str, id: str | None = None) -> dict:
    return fail(_record(uri, id), "input", "not_found", message)


def _name(uri: str) -> str:
    """What extensions are judged on: an http(s) URL's path (not its query), else the uri itself."""
    return urllib.parse.urlsplit(uri).path if is_http(uri) else uri


def _want(name: str, exts: tuple[str, ...] | None) -> bool:
    return exts is None or name.lower().endswith(exts)


def _is_list(spec: str, exts: tuple[str, ...] | None) -> bool:
    name = _name(spec)
    return name.lower().endswith(LIST_EXTS) and not (exts and _want(name, exts))


def _read_bytes(uri: str, read_remote: ReadRemote | None) -> bytes:
    if not is_remote(uri):
        path = Path(local_path(uri))
        if path.stat().st_size > LIST_FILE_MAX_BYTES:
            raise ValueError(f"over {LIST_FILE_MAX_BYTES} bytes")
        return path.read_bytes()
    if read_remote is None and is_http(uri):  # core never fetches by itself: the guard lives in pipelines.net
        raise ValueError("an http(s) list file is read only through the guarded downloader (read_remote)")
    if read_remote is not None:
        return read_remote(uri)
    import fsspec

    with fsspec.open(uri, "rb") as f:
        data = f.read(LIST_FILE_MAX_BYTES + 1)
    if len(data) > LIST_FILE_MAX_BYTES:
        raise ValueError(f"over {LIST_FILE_MAX_BYTES} bytes")
    return data


def _resolve(entry: str, base: str) -> str:
    if is_remote(entry) or entry.startswith("file://") or os.path.isabs(entry):
        return entry
    if is_http(base):
        return urllib.parse.urljoin(base, entry)
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


def _bad_line(uri: str, n: int, why: str) -> dict:
    return fail(new_record(make_key(uri, n)), "input", "bad_list_entry", f"{uri} line {n}: {why}")


def _lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the non-empty lines; only newlines split (JSON may hold U+2028 and kin)."""
    return [(n, line.rstrip("\r")) for n, line in enumerate(text.split("\n"), 1) if line.strip()]


def read_list_file(uri: str, read_remote: ReadRemote | None = None) -> list[dict]:
    """Records from a ``.txt``, ``.jsonl`` or ``.csv``/``.tsv`` list file; each bad line fails alone."""
    try:
        raw = _read_bytes(uri, read_remote)
    except Exception as e:  # noqa: BLE001 - any reader failure (missing, denied, network) fails this input
        why = getattr(e, "kind", None) or type(e).__name__
        return [fail(_record(uri), "input", "unreadable", f"cannot read the list file {uri}: {why}: {e}")]
    text = raw.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    low = _name(uri).lower()
    out = []
    not_utf8 = "not UTF-8 text (the line is skipped; the others are read)"
    if low.endswith(".jsonl"):
        for n, line in _lines(text):
            if _NOT_UTF8.search(line):
                out.append(_bad_line(uri, n, not_utf8))
                continue
            try:
                obj = json.loads(line)
            except (json.JSONDecodeError, RecursionError, ValueError):
                obj = None
            if not isinstance(obj, dict):
                out.append(_bad_line(uri, n, "not a JSON object"))
                continue
            out.append(_entry(obj, uri, f"{uri} line {n}"))
    elif low.endswith((".csv", ".tsv")):
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if low.endswith(".tsv") else ",")
        try:
            for row in reader:
                n = reader.line_num
                if any(_NOT_UTF8.search(str(v)) for kv in row.items() for v in kv if v):
                    out.append(_bad_line(uri, n, not_utf8))
                    continue
                out.append(_entry({k.strip(): v for k, v in row.items() if isinstance(k, str)}, uri, f"{uri} line {n}"))
        except csv.Error as e:
            out.append(_bad_line(uri, reader.line_num, f"not CSV ({e}); the lines after it are not read"))
    else:
        for n, line in _lines(text):
            line = line.strip()
            if line.startswith("#"):
                continue
            if _NOT_UTF8.search(line):
                out.append(_bad_line(uri, n, not_utf8))
                continue
            out.append(_check(_record(_resolve(line, uri))))
    return out


def _is_glob(spec: str) -> bool:
    """Glob characters make a pattern, except in http(s) URLs (``?`` starts the query) and existing files."""
    if is_http(spec) or not any(c in spec for c in _GLOB_CHARS):
        return False
    return is_remote(spec) or not os.path.exists(local_path(spec))


def _expand(spec: str, exts: tuple[str, ...] | None, read_remote: ReadRemote | None) -> list[dict]:
    if not spec.strip():
        return [_missing(repr(spec), "an empty input name: give a file, folder, glob, list file or URL")]
    if _is_glob(spec):
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
        return read_list_file(spec, read_remote) if _is_list(spec, exts) else [_record(spec)]
    path = Path(local_path(spec))
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _want(p.name, exts))
        if not files:
            return [_missing(spec, f"directory has no input files: {spec}")]
        return [_record(str(p.resolve())) for p in files]
    if not path.exists():
        return [_missing(spec, f"input path does not exist: {spec}")]
    if _is_list(spec, exts):
        return read_list_file(str(path.resolve()), read_remote)
    return [_record(str(path.resolve()))]


def list_inputs(specs: list[str], exts: tuple[str, ...] | None = None,
                read_remote: ReadRemote | None = None) -> list[dict]:
    """One record per input, in the order given; a uri listed twice is kept once.

    ``read_remote(uri) -> bytes`` reads remote list files (see the module doc).
    """
    out, seen = [], set()
    for spec in specs:
        for rec in _expand(spec, exts, read_remote):
            if rec["id"] in seen:
                log.info("input %s listed more than once; kept once", rec.get("uri"))
                continue
            seen.add(rec["id"])
            out.append(rec)
    return out
