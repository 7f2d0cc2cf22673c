"""What kq's two small HTTP servers (the worker's probes, the dashboard) share: a request
handler that sends a whole body in one go and logs requests at debug level only."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler

log = logging.getLogger("kq.httpd")


class Handler(BaseHTTPRequestHandler):
    """A handler whose replies are always complete bodies with a length."""

    #: Names the server in the debug log line of each request.
    label = "http"

    def send_body(
        self, status: int, body: bytes, content_type: str, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        log.debug("kq: %s %s - %s", self.label, self.address_string(), format % args)
