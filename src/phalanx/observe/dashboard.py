"""`--dashboard PORT`: a small HTTP server on 127.0.0.1 for the live fleet picture.

`--dashboard-bind HOST:PORT` serves it beyond this machine (a cluster's
monitoring): then every request needs the run's dashboard token, as
`?token=` (the page then keeps it in a cookie), a `phalanx_token` cookie or
`Authorization: Bearer` (Prometheus' `bearer_token_file` reads it from the run
directory's `.dashboard-token`, mode 600).

Routes: `/` (a self-refreshing page), `/fragment` (what the page swaps in),
`/api/state` (the fleet-state dict as JSON), `/metrics` (Prometheus text).

The owner's thread folds events and calls `publish(view)`; that builds an
immutable snapshot at most every `publish_s` and swaps one reference, which
the server threads only read. No lock is held while training runs.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import socket
import threading
import time
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from phalanx.errors import UsageError
from phalanx.fleetnet.hosts import is_loopback
from phalanx.observe.dashboard_page import fragment_html, page_html
from phalanx.observe.fleet_state import fleet_state
from phalanx.observe.fleet_view import FleetView
from phalanx.observe.metrics import metrics_registry, metrics_text

HOST = "127.0.0.1"  # the default: this machine only, no token needed
PUBLISH_S = 0.25
TOKEN_FILE = ".dashboard-token"
COOKIE = "phalanx_token"


class Dashboard:
    def __init__(
        self,
        port: int = 0,
        title: str = "phalanx fleet",
        publish_s: float = PUBLISH_S,
        host: str = HOST,
        token: str | None = None,
    ):
        self.host = host
        self.token = token  # None: no check (loopback only)
        self.title = title
        self.publish_s = publish_s
        self._state: dict[str, Any] | None = None
        self._published_version = -1
        self._published_at_s = float("-inf")  # the first publish goes out at once
        self._registry = metrics_registry(lambda: self._state)
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
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
        # Bound to every interface: other machines reach it by this host's name.
        host = socket.gethostname() if self.host in ("0.0.0.0", "::") else self.host
        shown = f"[{host}]" if ":" in host else host
        query = f"?token={self.token}" if self.token else ""
        return f"http://{shown}:{self.port}/{query}"

    def allows(self, presented: str | None) -> bool:
        if self.token is None:
            return True
        return presented is not None and hmac.compare_digest(presented, self.token)

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


def start_dashboard(
    port: int | None,
    title: str = "phalanx fleet",
    bind: str | None = None,
    token_dir: Path | None = None,
) -> Dashboard | None:
    """The dashboard `--dashboard PORT` or `--dashboard-bind HOST:PORT` asks for (None: none).

    Off loopback, a new token is written to `token_dir/.dashboard-token` (mode 600).
    """
    flag = "--dashboard-bind" if bind is not None else "--dashboard"
    host = HOST
    if bind is not None:
        host, port = parse_bind(bind)
    if port is None:
        return None
    if not 0 <= port <= 65535:
        raise UsageError(flag, "is not a port", "pass 0..65535 (0: the OS picks)", port)
    token = None if is_loopback(host) else secrets.token_urlsafe(24)
    try:
        board = Dashboard(port, title, host=host, token=token)
    except OSError as err:
        raise UsageError(
            flag,
            f"cannot listen there ({err.strerror})",
            "pass port 0 to let the OS pick, or an address of this host",
            bind or port,
        ) from None
    if token is not None and token_dir is not None:
        token_dir.mkdir(parents=True, exist_ok=True)
        path = token_dir / TOKEN_FILE
        path.unlink(missing_ok=True)  # a resumed run gets a new token
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
    return board


def parse_bind(text: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::]:PORT`) -> (host, port)."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        raise UsageError(
            "--dashboard-bind", "is not HOST:PORT", "e.g. --dashboard-bind 0.0.0.0:8080", text
        )
    return host, int(port)


def _handler_for(dashboard: Dashboard) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            given = (parse_qs(query).get("token") or [None])[0]
            presented = given or _bearer(self.headers.get("Authorization")) or _cookie(self)
            if not dashboard.allows(presented):
                self._send(401, "text/plain; charset=utf-8", "a dashboard token is needed: "
                           "open the URL the run printed, or send Authorization: Bearer\n")  # fmt: skip
                return
            self._cookie = given if given and dashboard.token else None
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
            if getattr(self, "_cookie", None):  # the page's own refreshes then carry it
                self.send_header(
                    "Set-Cookie", f"{COOKIE}={self._cookie}; HttpOnly; SameSite=Strict; Path=/"
                )
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a request log would scroll over the live terminal view

    return Handler


def _bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


def _cookie(handler: BaseHTTPRequestHandler) -> str | None:
    jar = SimpleCookie()
    try:
        jar.load(handler.headers.get("Cookie") or "")
    except Exception:  # a malformed cookie header is no token
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel else None
