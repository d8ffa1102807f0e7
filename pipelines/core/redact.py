"""Secret redaction: the one place every pipeline's records, settings and messages pass before they reach disk.

Secret-like settings (names containing api_key, token, password, secret, credential, ...) are replaced by
``***``; credentials inside URLs (``user:pass@host``, signature and token query parameters of signed URLs)
are replaced too, wherever a URL appears in a string.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

MASK = "***"
_SECRET_NAME = re.compile(r"(api[_-]?key|apikey|token|passw(or)?d|secret|credential|auth|private[_-]?key|"
                          r"session[_-]?id|cookie|signature)", re.IGNORECASE)
# query parameters that carry credentials in signed or authenticated URLs
_SECRET_PARAM = re.compile(r"^(x-amz-(signature|credential|security-token)|x-goog-(signature|credential)|sig|"
                           r"signature|se|sv|st|skoid|sktid|token|access_token|id_token|api_key|apikey|key|"
                           r"auth|password|pwd|secret|client_secret|code)$", re.IGNORECASE)
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def redact_url(url: str) -> str:
    """The URL without credentials: user info and secret query parameters are masked."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_PARAM.match(k) for k, _ in pairs):
            query = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}=" + (MASK if _SECRET_PARAM.match(k) else
                             urllib.parse.quote(v, safe="-_.~/:")) for k, v in pairs)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """``text`` with every URL's credentials masked."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text) if "://" in text else text


def redact(obj: Any) -> Any:
    """A copy of plain data (dicts, lists, strings) with secret-named values masked and URLs cleaned."""
    if isinstance(obj, dict):
        return {k: (MASK if is_secret_name(str(k)) and v not in (None, "", {}, []) else redact(v))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj)
    return obj
