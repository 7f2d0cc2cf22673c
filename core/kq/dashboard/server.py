"""The dashboard's HTTP server: the static page and its JSON API, optionally behind basic auth
(every request) or a bearer token (the API: the page, opened as ``/#token=T``, sends it).

API (JSON in and out)::

    GET  /api/overview                 workers, counts, throughput, queues and depth history,
                                       failures, rate limits
    GET  /api/tasks?state=S&name=N     the tasks seen, newest first
    GET  /api/tasks/ID                 one task, with its result or traceback from the backend
    POST /api/tasks/ID/revoke          revoke it (every worker, as App.revoke)
    POST /api/tasks/ID/retry           send it again under a new id: {"id": new id}
    POST /api/rate_limit               {"task": name, "rate": "10/s" or "none"}: the workers' replies
"""

from __future__ import annotations

import base64
import hmac
import importlib.resources
import json
import re
import threading
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..exceptions import ConfigurationError
from ..httpd import Handler
from .state import Dashboard, NotFound

STATIC = {
    "/": ("index.html", "text/html"),
    "/static/app.js": ("app.js", "text/javascript"),
    "/static/style.css": ("style.css", "text/css"),
}
_TASK = re.compile(r"^/api/tasks/([^/]+)(?:/(revoke|retry))?$")


class _Handler(Handler):
    server: DashboardServer
    label = "dashboard"

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        if not self._allowed():
            return
        url = urlsplit(self.path)
        dashboard = self.server.dashboard
        if url.path in STATIC:
            name, content_type = STATIC[url.path]
            self._send(200, self.server.static(name), content_type)
        elif url.path == "/api/overview":
            self._json(200, dashboard.overview())
        elif url.path == "/api/tasks":
            query = parse_qs(url.query)
            self._json(
                200, {"tasks": dashboard.tasks(query.get("state", [""])[0], query.get("name", [""])[0])}
            )
        elif (match := _TASK.match(url.path)) and match[2] is None:
            try:
                self._json(200, dashboard.task(match[1]))
            except NotFound:
                self._json(404, {"error": f"no task {match[1]} seen or stored"})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        if not self._allowed():
            return
        path, dashboard = urlsplit(self.path).path, self.server.dashboard
        try:
            if (match := _TASK.match(path)) and match[2] == "revoke":
                dashboard.revoke(match[1])
                self._json(200, {"ok": f"revoked {match[1]}"})
            elif match and match[2] == "retry":
                self._json(200, {"ok": "sent again", "id": dashboard.retry(match[1])})
            elif path == "/api/rate_limit":
                body = self._body()
                task, rate = body.get("task"), body.get("rate")
                if not isinstance(task, str) or not isinstance(rate, str):
                    raise ValueError('send {"task": name, "rate": "10/s" or "none"}')
                replies = dashboard.rate_limit(task, rate, body.get("destination"))
                self._json(
                    200 if replies else 504,
                    {"replies": replies} if replies else {"error": "no worker replied"},
                )
            else:
                self._json(404, {"error": "not found"})
        except NotFound as exc:
            self._json(404, {"error": f"no task {exc} seen or stored"})
        except ValueError as exc:
            self._json(400, {"error": str(exc)})

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        data = json.loads(self.rfile.read(length) or b"{}")
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        return data

    def _allowed(self) -> bool:
        """Whether the request carries the configured credentials; answers 401 if not."""
        expected = self.server.authorization
        if expected is None or (expected.startswith("Bearer ") and self.path in STATIC):
            return True  # a browser cannot send a token with a page load; the page holds no data
        given = self.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), expected.encode()):
            return True
        challenge = (
            'Basic realm="kq dashboard", charset="UTF-8"' if expected.startswith("Basic ") else "Bearer"
        )
        self.send_body(
            401,
            json.dumps({"error": "authentication required"}).encode(),
            "application/json",
            [("WWW-Authenticate", challenge)],
        )
        return False

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data, default=repr).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_body(status, body, content_type, [("Cache-Control", "no-store")])


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, dashboard: Dashboard, host: str, port: int, *, auth: str | None = None, token: str | None = None
    ) -> None:
        if auth is not None and token is not None:
            raise ConfigurationError("use basic auth or a token, not both")
        if auth is not None and ":" not in auth:
            raise ConfigurationError("--auth takes user:password")
        self.dashboard = dashboard
        #: The whole Authorization header a request must send, or None for no check.
        self.authorization = (
            f"Basic {base64.b64encode(auth.encode()).decode()}"
            if auth is not None
            else f"Bearer {token}"
            if token is not None
            else None
        )
        self._static: dict[str, bytes] = {}
        try:
            super().__init__((host, port), _Handler)
        except OSError as exc:
            raise ConfigurationError(f"kq dashboard: cannot listen on {host}:{port}: {exc}") from None

    def static(self, name: str) -> bytes:
        if name not in self._static:
            self._static[name] = (importlib.resources.files(__package__) / "static" / name).read_bytes()
        return self._static[name]


def serve(
    dashboard: Dashboard, host: str, port: int, *, auth: str | None = None, token: str | None = None
) -> DashboardServer:
    """Start ``dashboard``'s threads and serve it from a daemon thread; ``shutdown()`` the
    result (then ``dashboard.stop()``) to stop."""
    server = DashboardServer(dashboard, host, port, auth=auth, token=token)
    dashboard.start()
    threading.Thread(target=server.serve_forever, name="kq-dashboard-http", daemon=True).start()
    return server
