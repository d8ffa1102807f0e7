"""Request handlers for the tests' loopback HTTP servers (import as ``from loopback import QuietReplies``)."""

from __future__ import annotations


class QuietReplies:
    """Mixin for a ``BaseHTTPRequestHandler``: no access log, and ``reply`` sends a whole response.

    ``content_type`` is the handler's default Content-Type. A client that hangs up mid-body (timeouts, size
    caps) is what many tests are about, so a broken pipe while writing is not an error here."""

    content_type = "application/octet-stream"

    def log_message(self, *a):
        pass

    def reply(self, code: int, body: bytes = b"", ctype: str | None = None, headers=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype or self.content_type)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
