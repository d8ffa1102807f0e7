"""Safe fetching of images and pages for every pipeline: http(s), ``data:`` URIs and local files.

Every fetch ends in a ``FetchResult`` whose ``outcome`` is ``ok`` or one error kind:

| outcome             | meaning                                                                  |
|---------------------|--------------------------------------------------------------------------|
| ok                  | bytes arrived and (for images) decoded; ``data`` holds jpg/png/webp bytes |
| bad_url             | not http(s), data: or an allowed local path; malformed                    |
| refused_address     | the host is or resolves to a private/loopback/link-local/metadata address, |
|                     | or is a number in disguise (``127.1``, ``2130706433``)                    |
| dns_error           | the host does not resolve                                                |
| connection_error    | connect/read failed after the retries                                    |
| timeout             | no complete answer within ``timeout_s`` after the retries                |
| http_<code>         | the server answered with an error status (``http_404``, ``http_500``)     |
| too_many_redirects  | more than ``max_redirects`` hops (loops end here)                        |
| too_large           | the body is over ``max_bytes``                                           |
| robots              | ``X-Robots-Tag`` forbids use for AI (``noai``, ``noimageai`` by default)  |
| not_an_image        | the bytes do not decode as an image, whatever the content type says      |
| pixel_cap           | width x height over ``max_pixels`` (decompression bombs)                  |
| svg_rejected        | an SVG while ``svg`` is ``reject``                                       |
| decode_limit        | rasterising the SVG went over ``timeout_s`` of time or the memory cap    |
| outside_local_root  | a local path outside the folder the page came from                        |
| file_missing        | a local path that does not exist                                         |

Outcomes in ``RETRYABLE_OUTCOMES`` (timeouts, connection and DNS errors, 429 and 5xx) may heal by
themselves and are worth another run; every other error outcome is permanent for the same bytes.

Address checks (``pipelines/net/netguard.py``) happen on the addresses the connection actually uses (a
resolver that filters what DNS returns), for every redirect hop, so DNS tricks and redirects cannot
reach a refused network. Metadata endpoints (169.254.169.254 and kin) stay refused even with
``allow_private_net``. Image bytes are checked and converted by ``pipelines/net/image_decode.py``;
``Fetcher.download`` streams a large body (a remote video) to a file under one overall deadline.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.net.image_decode import decode_image
from pipelines.net.netguard import Refused, address_refusal, guarded_resolver_class, numeric_host_refusal

REDIRECTS = (301, 302, 303, 307, 308)
RETRY_STATUS = (429, 500, 502, 503, 504)
RETRYABLE_OUTCOMES = frozenset({"timeout", "connection_error", "dns_error", *(f"http_{c}" for c in RETRY_STATUS)})


def is_retryable(outcome: str) -> bool:
    """Whether a fetch outcome may heal by itself (a later run may succeed on the same URL)."""
    return outcome in RETRYABLE_OUTCOMES


@dataclass(frozen=True)
class FetchConfig:
    """How images and pages are fetched.

    timeout_s: limit for one attempt (connect, headers and body); connect_timeout_s for the connect alone.
    retries: extra attempts after timeouts, connection errors, 429 and 5xx (not after other 4xx).
    backoff_s: first wait between attempts; doubles each time.
    concurrency / per_host: open requests in all / to one host (connections are reused).
    max_bytes: body size cap for images; max_page_bytes for HTML pages.
    max_redirects: hops before ``too_many_redirects``.
    max_pixels: width x height cap checked from the header before decoding (decompression bombs).
    svg: ``rasterize`` (to PNG with cairosvg: no scripts, no external files) or ``reject``.
    svg_max_side: longest side of a rasterised SVG.
    honour_robots: skip images whose ``X-Robots-Tag`` carries one of ``robots_tags``.
    allow_private_net: allow private, loopback and link-local addresses (metadata stays refused).
    local_root: folder local pages may take images from (default: the folder given as input).
    user_agent: sent with every request.
    """

    timeout_s: float = 10.0
    connect_timeout_s: float = 5.0
    retries: int = 2
    backoff_s: float = 0.25
    concurrency: int = 64
    per_host: int = 16
    max_bytes: int = 20 << 20
    max_page_bytes: int = 10 << 20
    max_redirects: int = 5
    max_pixels: int = 60_000_000
    svg: str = "rasterize"
    svg_max_side: int = 1024
    honour_robots: bool = True
    robots_tags: tuple[str, ...] = ("noai", "noimageai")
    allow_private_net: bool = False
    local_root: str | None = None
    user_agent: str = "braid/0.1 (interleaved image-text data builder)"

    def __post_init__(self):
        if self.svg not in ("rasterize", "reject"):
            raise ValueError(f"svg must be 'rasterize' or 'reject', not {self.svg!r}")
        if self.timeout_s <= 0 or self.concurrency < 1 or self.per_host < 1 or self.max_bytes < 1:
            raise ValueError("timeout_s, concurrency, per_host and max_bytes must be positive")
        if self.retries < 0 or self.max_redirects < 0:
            raise ValueError("retries and max_redirects must not be negative")


@dataclass
class FetchResult:
    url: str
    outcome: str
    detail: str = ""
    data: bytes = b""
    ext: str = ""
    width: int = 0
    height: int = 0
    status: int | None = None
    final_url: str = ""
    content_type: str = ""
    attempts: int = 0
    redirects: int = 0
    elapsed_s: float = 0.0
    meta: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def record(self) -> dict:
        """The JSON-safe outcome (no bytes) for manifests and sample metadata."""
        d = {"url": self.url, "outcome": self.outcome}
        for k in ("detail", "status", "ext", "width", "height", "attempts", "redirects"):
            v = getattr(self, k)
            if v:
                d[k] = v
        if self.final_url and self.final_url != self.url:
            d["final_url"] = self.final_url
        d["elapsed_s"] = round(self.elapsed_s, 4)
        return d


# ---------------------------------------------------------------- robots


def robots_forbid(values: list[str], tags: tuple[str, ...], agent: str) -> str | None:
    """The X-Robots-Tag directive that forbids use, or None. ``bot: noai`` counts only for us or ``*``."""
    me = agent.split("/", 1)[0].lower()
    for value in values:
        scope, sep, rest = value.partition(":")
        scope = scope.strip().lower()
        if sep and "," not in scope and scope != "unavailable_after":
            if scope not in (me, "*"):
                continue
            directives = rest
        else:
            directives = value
        for d in directives.split(","):
            if d.strip().lower() in tags:
                return d.strip().lower()
    return None


# ---------------------------------------------------------------- the fetcher


def _data_uri(url: str, cap: int) -> bytes:
    head, sep, payload = url[5:].partition(",")
    if not sep:
        raise Refused("bad_url", "data: URI without a comma")
    if len(payload) > cap * 4 // 3 + 8:
        raise Refused("too_large", f"data: URI over {cap} bytes")
    try:
        data = base64.b64decode(payload, validate=False) if head.endswith(";base64") else \
            urllib.parse.unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as e:
        raise Refused("bad_url", f"data: URI does not decode: {e}") from None
    if len(data) > cap:
        raise Refused("too_large", f"{len(data)} bytes > {cap}")
    return data


def _local(url: str, root: str | None, cap: int) -> bytes:
    path = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).resolve()
    if root is None or not path.is_relative_to(Path(root).resolve()):
        raise Refused("outside_local_root", f"{path} is outside {root}")
    if not path.is_file():
        raise Refused("file_missing", str(path))
    if path.stat().st_size > cap:
        raise Refused("too_large", f"{path.stat().st_size} bytes > {cap}")
    return path.read_bytes()


class Fetcher:
    """Fetches batches of URLs over one connection pool kept for the fetcher's life.

    The event loop runs in a background thread, so callers stay synchronous (stage functions) while
    requests of a batch run concurrently and connections are reused across batches.
    """

    def __init__(self, cfg: FetchConfig = FetchConfig()):
        self.cfg = cfg
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session = None
        self._lock = threading.Lock()
        if cfg.svg == "rasterize":
            try:
                import cairosvg  # noqa: F401
            except (ImportError, OSError):
                from schemas.config import ConfigError

                raise ConfigError("fetch.svg is 'rasterize' but cairosvg cannot load; pip install cairosvg "
                                  "(needs libcairo) or set fetch.svg to 'reject'") from None

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                t = threading.Thread(target=loop.run_forever, name="braid-fetch", daemon=True)
                t.start()
                self._loop, self._thread = loop, t
        return self._loop

    async def _get_session(self):
        import aiohttp

        if self._session is None:
            conn = aiohttp.TCPConnector(limit=self.cfg.concurrency, limit_per_host=self.cfg.per_host,
                                        resolver=guarded_resolver_class()(self.cfg.allow_private_net), ttl_dns_cache=60)
            self._session = aiohttp.ClientSession(connector=conn, headers={"User-Agent": self.cfg.user_agent},
                                                  auto_decompress=True)
        return self._session

    def fetch(self, urls: list[str], kind: str = "image", local_root: str | None = None) -> list[FetchResult]:
        """One result per URL, in order. ``kind`` is ``image`` (decoded and checked) or ``page`` (raw bytes)."""
        if not urls:
            return []
        loop = self._start()
        fut = asyncio.run_coroutine_threadsafe(self._fetch_all(urls, kind, local_root), loop)
        return fut.result()

    async def _fetch_all(self, urls, kind, local_root):
        sem = asyncio.Semaphore(self.cfg.concurrency)
        hosts: dict[str, asyncio.Semaphore] = {}

        async def one(u):
            # wait for a slot here, not inside aiohttp's pool, where waiting would count against the timeout
            host = urllib.parse.urlsplit(u).netloc if u[:4].lower() == "http" else ""
            per_host = hosts.setdefault(host, asyncio.Semaphore(self.cfg.per_host))
            async with sem, per_host:
                return await self._fetch_one(u, kind, local_root)

        return await asyncio.gather(*(one(u) for u in urls))

    async def _fetch_one(self, url: str, kind: str, local_root: str | None) -> FetchResult:
        t0 = time.perf_counter()
        res = FetchResult(url=url, outcome="ok")
        cap = self.cfg.max_bytes if kind == "image" else self.cfg.max_page_bytes
        try:
            scheme = urllib.parse.urlparse(url).scheme.lower()
            if scheme == "data":
                data = _data_uri(url, cap)
            elif scheme == "file":
                data = _local(url, local_root or self.cfg.local_root, cap)
            elif scheme in ("http", "https"):
                data = await self._http(url, res, cap)
            else:
                raise Refused("bad_url", f"scheme {scheme!r} is not fetched")
            if kind == "image":
                # decoding is CPU work: keep it off the event loop so other downloads go on
                res.data, res.ext, res.width, res.height = await asyncio.get_running_loop().run_in_executor(
                    None, decode_image, data, self.cfg)
            else:
                res.data = data
        except Refused as r:
            res.outcome, res.detail, res.data = r.outcome, r.detail, b""
        res.elapsed_s = time.perf_counter() - t0
        return res

    async def _http(self, url: str, res: FetchResult, cap: int, sink=None, timeout=None) -> bytes:
        """The body (or b"" after writing it to ``sink``), with retries after failures that may heal."""
        import aiohttp

        timeout = timeout or aiohttp.ClientTimeout(total=self.cfg.timeout_s, connect=self.cfg.connect_timeout_s)
        session = await self._get_session()
        last: Refused | None = None
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                await asyncio.sleep(self.cfg.backoff_s * 2 ** (attempt - 1))
            res.attempts = attempt + 1
            if sink is not None:
                sink.seek(0)
                sink.truncate()
            try:
                return await self._follow(session, url, res, cap, timeout, sink)
            except Refused as r:
                last = r
                if r.outcome not in ("timeout", "connection_error") and not (
                        r.outcome.startswith("http_") and res.status in RETRY_STATUS):
                    raise
        assert last is not None
        raise last

    async def _follow(self, session, url: str, res: FetchResult, cap: int, timeout, sink=None) -> bytes:
        import aiohttp

        current = url
        for hop in range(self.cfg.max_redirects + 1):
            parsed = urllib.parse.urlsplit(current)
            if parsed.scheme.lower() not in ("http", "https") or not parsed.hostname:
                raise Refused("bad_url", f"cannot fetch {current[:200]!r}")
            host = parsed.hostname.strip("[]")
            try:
                ipaddress.ip_address(host)
            except ValueError:  # a host name: the resolver checks what it resolves to
                why = numeric_host_refusal(host)
            else:
                why = address_refusal(host, self.cfg.allow_private_net)
            if why:
                raise Refused("refused_address", why)
            res.redirects, res.final_url = hop, current
            try:
                async with session.get(current, allow_redirects=False, timeout=timeout) as resp:
                    res.status = resp.status
                    if resp.status in REDIRECTS and "Location" in resp.headers:
                        current = urllib.parse.urljoin(current, resp.headers["Location"])
                        continue
                    if resp.status >= 400:
                        raise Refused(f"http_{resp.status}", resp.reason or "")
                    res.content_type = resp.headers.get("Content-Type", "")
                    if self.cfg.honour_robots:
                        tag = robots_forbid(resp.headers.getall("X-Robots-Tag", []), self.cfg.robots_tags,
                                            self.cfg.user_agent)
                        if tag:
                            raise Refused("robots", f"X-Robots-Tag: {tag}")
                    if resp.content_length is not None and resp.content_length > cap:
                        raise Refused("too_large", f"Content-Length {resp.content_length} > {cap}")
                    buf, n = bytearray(), 0
                    async for chunk in resp.content.iter_chunked(1 << 16):
                        n += len(chunk)
                        if n > cap:
                            raise Refused("too_large", f"body over {cap} bytes")
                        if sink is None:
                            buf += chunk
                        else:
                            sink.write(chunk)
                    return bytes(buf)
            except Refused:
                raise
            except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as e:
                raise Refused("timeout", f"no complete answer within {timeout.total:g} s ({type(e).__name__})") from None
            except aiohttp.ClientConnectorDNSError as e:
                raise Refused("dns_error", str(e)) from None
            except (aiohttp.ClientError, OSError) as e:
                raise Refused("connection_error", f"{type(e).__name__}: {e}") from None
        raise Refused("too_many_redirects", f"more than {self.cfg.max_redirects} redirects")

    def download(self, url: str, sink, max_bytes: int, time_limit_s: float) -> FetchResult:
        """Stream an http(s) body into the binary file ``sink``; the whole fetch ends within ``time_limit_s``.

        The same guards as ``fetch`` (addresses after DNS and on every redirect, size cap, robots, retries),
        but one deadline covers every attempt, redirect and byte, so a server that trickles a byte a second
        ends at the limit. Attempts also end when no byte comes for ``timeout_s``. ``sink`` holds the body
        when the outcome is ``ok``; the caller owns (and removes) it.
        """
        loop = self._start()
        fut = asyncio.run_coroutine_threadsafe(self._download(url, sink, max_bytes, time_limit_s), loop)
        return fut.result()

    async def _download(self, url: str, sink, cap: int, limit: float) -> FetchResult:
        import aiohttp

        t0 = time.perf_counter()
        res = FetchResult(url=url, outcome="ok")
        timeout = aiohttp.ClientTimeout(total=limit, connect=min(self.cfg.connect_timeout_s, limit),
                                        sock_read=min(self.cfg.timeout_s, limit))
        try:
            if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
                raise Refused("bad_url", f"only http(s) URLs are downloaded here, not {url[:200]!r}")
            await asyncio.wait_for(self._http(url, res, cap, sink, timeout), limit)
        except asyncio.TimeoutError:
            res.outcome, res.detail = "timeout", f"the download did not finish within {limit:g} s"
        except Refused as r:
            res.outcome, res.detail = r.outcome, r.detail
        res.elapsed_s = time.perf_counter() - t0
        return res

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if self._session is not None:
            asyncio.run_coroutine_threadsafe(self._session.close(), loop).result(timeout=10)
            self._session = None
        loop.call_soon_threadsafe(loop.stop)
        if self._thread:
            self._thread.join(timeout=10)
        loop.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
