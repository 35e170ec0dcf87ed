"""`--dashboard PORT`: a small HTTP server on 127.0.0.1 for the live fleet picture.

Routes: `/` (a self-refreshing page), `/fragment` (what the page swaps in),
`/api/state` (the fleet-state dict as JSON), `/metrics` (Prometheus text).

The owner's thread folds events and calls `publish(view)`; that builds an
immutable snapshot at most every `publish_s` and swaps one reference, which
the server threads only read. No lock is held while training runs.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from phalanx.errors import UsageError
from phalanx.observe.dashboard_page import fragment_html, page_html
from phalanx.observe.fleet_state import fleet_state
from phalanx.observe.fleet_view import FleetView
from phalanx.observe.metrics import metrics_registry, metrics_text

HOST = "127.0.0.1"  # never exposed beyond this machine: the page has no authentication
PUBLISH_S = 0.25


class Dashboard:
    def __init__(self, port: int = 0, title: str = "phalanx fleet", publish_s: float = PUBLISH_S):
        self.title = title
        self.publish_s = publish_s
        self._state: dict[str, Any] | None = None
        self._published_version = -1
        self._published_at_s = float("-inf")  # the first publish goes out at once
        self._registry = metrics_registry(lambda: self._state)
        self._server = ThreadingHTTPServer((HOST, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="phalanx-dashboard", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    @property
    def state(self) -> dict[str, Any] | None:
        return self._state

    def publish(self, view: FleetView, force: bool = False, now_s: float | None = None) -> None:
        """`now_s`: the clock for elapsed time (None: now; a replayed run passes its own)."""
        now = time.monotonic()
        age_s = now - self._published_at_s
        unchanged = view.version == self._published_version
        # An unchanged view is still republished once a second: elapsed time moves.
        if not force and (age_s < self.publish_s or (unchanged and age_s < 1.0)):
            return
        self._state = fleet_state(view, time.time() if now_s is None else now_s)
        self._published_version = view.version
        self._published_at_s = now

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_dashboard(port: int | None, title: str = "phalanx fleet") -> Dashboard | None:
    """The dashboard a `--dashboard PORT` option asks for (None: none asked for)."""
    if port is None:
        return None
    if not 0 <= port <= 65535:
        raise UsageError("--dashboard", "is not a port", "pass 0..65535 (0: the OS picks)", port)
    try:
        return Dashboard(port, title)
    except OSError as err:
        raise UsageError(
            "--dashboard",
            f"cannot listen there ({err.strerror})",
            "pass 0 to let the OS pick",
            port,
        ) from None


def _handler_for(dashboard: Dashboard) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            state = dashboard.state
            if path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", page_html(state, dashboard.title))
            elif path == "/fragment":
                self._send(200, "text/html; charset=utf-8", fragment_html(state))
            elif path == "/api/state":
                self._send(200, "application/json", json.dumps(state or {}))
            elif path == "/metrics":
                self._send(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    metrics_text(dashboard._registry),
                )
            else:
                self._send(404, "text/plain; charset=utf-8", "not found\n")

        def _send(self, code: int, content_type: str, body: str | bytes) -> None:
            data = body.encode() if isinstance(body, str) else body
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a request log would scroll over the live terminal view

    return Handler
