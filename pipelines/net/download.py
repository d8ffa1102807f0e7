"""Remote inputs to a local temporary file, under the same guards as every other fetch.

``download_to_temp(uri, max_bytes, time_limit_s, fetch_cfg)`` is the one download path for inputs a stage
needs as a file (a video at ``https://...``, ``s3://...``, any fsspec URI):

- http(s) goes through ``Fetcher.download`` (pipelines/net/fetch.py, aiohttp): addresses are checked after
  DNS and on every redirect (``fetch_cfg.allow_private_net`` lifts the private-network refusal, never the
  metadata one), the size is capped, and one deadline covers the whole download, so a server that trickles
  a byte a second ends at ``time_limit_s``.
- Other schemes go through fsspec (s3fs, gcsfs, ... when installed), read in a worker thread that is
  abandoned at the deadline. Schemes that name a host (``ftp://``, ``sftp://``, ``smb://``, ``webhdfs://``)
  get the address check on what the host resolves to; fsspec's own ``http`` and URL chains through it
  (``simplecache::https://...``) are refused, as they would bypass the guarded path.

The temporary file is removed on every path that does not hand it to the caller (refusal, HTTP error,
size cap, timeout, interrupt). Errors raise ``DownloadError`` whose ``kind`` is the failure reason:
the fetch outcomes (``refused_address``, ``timeout``, ``http_404``, ...) plus ``not_found``,
``access_denied``, ``unsupported_scheme`` and ``fetch_error`` (a transient read failure) for fsspec sources.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
import urllib.parse
from dataclasses import replace
from pathlib import Path

from pipelines.net.fetch import FetchConfig, Fetcher
from pipelines.net.netguard import address_refusal, numeric_host_refusal

HOST_SCHEMES = ("ftp", "sftp", "ssh", "smb", "webhdfs", "hdfs")
HTTP_SCHEMES = ("http", "https")


class DownloadError(Exception):
    """A remote input could not be downloaded; ``kind`` is the failure reason for the manifest."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def download_to_temp(uri: str, max_bytes: int, time_limit_s: float, fetch_cfg: FetchConfig | None = None,
                     dest_dir: str | None = None) -> Path:
    """Download ``uri`` to a new temporary file that the caller deletes. Raises DownloadError."""
    cfg = replace(fetch_cfg or FetchConfig(), svg="reject")  # bytes only: no image decoding here
    suffix = Path(urllib.parse.urlsplit(uri).path).suffix[:8]
    fd, tmp = tempfile.mkstemp(prefix="braid-fetch-", suffix=suffix, dir=dest_dir)
    try:
        with os.fdopen(fd, "w+b") as out:
            scheme = urllib.parse.urlsplit(uri).scheme.lower()
            if scheme in HTTP_SCHEMES:
                with Fetcher(cfg) as f:
                    res = f.download(uri, out, max_bytes, time_limit_s)
                if not res.ok:
                    raise DownloadError(res.outcome, f"{_short(uri)}: {res.outcome}"
                                        + (f" ({res.detail})" if res.detail else ""))
            else:
                _check_fsspec_uri(uri, cfg.allow_private_net)
                _fsspec_copy(uri, out, max_bytes, time_limit_s)
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


def _short(uri: str) -> str:
    """The uri without its query (signed URLs carry credentials there), cut to a readable length."""
    parts = urllib.parse.urlsplit(uri)
    bare = urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    return bare[:200]


def _check_fsspec_uri(uri: str, allow_private: bool) -> None:
    for link in uri.split("::"):
        parts = urllib.parse.urlsplit(link)
        scheme = parts.scheme.lower()
        if scheme in HTTP_SCHEMES or scheme.endswith(("http", "https")):
            raise DownloadError("bad_url", f"{_short(uri)}: http(s) inside an fsspec URL chain is not fetched; "
                                           "give the plain http(s) URL")
        if scheme in HOST_SCHEMES and parts.hostname:
            why = _host_refusal(parts.hostname, allow_private)
            if why:
                raise DownloadError("refused_address", f"{_short(uri)}: {why}")


def _host_refusal(host: str, allow_private: bool) -> str | None:
    why = numeric_host_refusal(host)
    if why:
        return why
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return None  # does not resolve: fsspec reports that itself
    for info in infos:
        why = address_refusal(info[4][0], allow_private)
        if why:
            return f"{host} -> {why}"
    return None


def _fsspec_copy(uri: str, out, max_bytes: int, time_limit_s: float) -> None:
    box: dict = {}
    stop = threading.Event()

    def work():
        try:
            import fsspec

            n = 0
            with fsspec.open(uri, "rb") as f:
                while not stop.is_set():
                    chunk = f.read(1 << 20)
                    if not chunk:
                        return
                    n += len(chunk)
                    if n > max_bytes:
                        raise DownloadError("too_large", f"{_short(uri)} is over the {max_bytes}-byte limit")
                    out.write(chunk)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = e

    t = threading.Thread(target=work, name="braid-download", daemon=True)
    t0 = time.monotonic()
    t.start()
    t.join(time_limit_s)
    if t.is_alive():
        stop.set()  # the thread stops at its next chunk; a read stuck in the network is abandoned
        raise DownloadError("timeout", f"{_short(uri)}: the download did not finish within {time_limit_s:g} s "
                                       f"({time.monotonic() - t0:.1f} s)")
    e = box.get("error")
    if e is None:
        return
    if isinstance(e, DownloadError):
        raise e
    if isinstance(e, FileNotFoundError):
        raise DownloadError("not_found", f"{_short(uri)} does not exist") from None
    if isinstance(e, PermissionError):
        raise DownloadError("access_denied", f"{_short(uri)}: access denied ({e})") from None
    if isinstance(e, ImportError) or (isinstance(e, ValueError) and "protocol" in str(e).lower()):
        raise DownloadError("unsupported_scheme", f"cannot read {_short(uri)}: {e} (install the fsspec backend "
                                                  "for this scheme)") from None
    if isinstance(e, TimeoutError):
        raise DownloadError("timeout", f"{_short(uri)}: {e}") from None
    if isinstance(e, (OSError, ValueError)):
        raise DownloadError("fetch_error", f"cannot read {_short(uri)}: {type(e).__name__}: {e}") from None
    raise e


def download_bytes(uri: str, fetch_cfg: FetchConfig | None = None, max_bytes: int = 256 << 20,
                   time_limit_s: float = 120.0) -> bytes:
    """The body of a (small) remote file, such as a list file, through the same guarded path."""
    path = download_to_temp(uri, max_bytes, time_limit_s, fetch_cfg)
    try:
        return path.read_bytes()
    finally:
        path.unlink(missing_ok=True)
