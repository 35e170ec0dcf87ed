"""The outer lighthouse: a plain torchft lighthouse that every replica of every site joins.

It forms the outer quorum (sites/outer_link.py): no quorum with fewer than a
majority of the sites (`outer_quorum_size`), a live but slow site waited for
`join_timeout_s` at an outer step, a site whose heartbeats stop (cut off, dead)
left out after `heartbeat_timeout_s`. It keeps no state of its own: restarted,
it serves the next outer step as before.

In a program: `start_outer_lighthouse(sites=2)` (in this process) or
`OuterLighthouseProcess` (a child process, its log in a file). For sites on
several machines, one runs in the foreground at a place every site reaches:

    python -m phalanx.sites.outer_lighthouse --sites 3 --port 29600
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
from pathlib import Path

from phalanx.errors import EXIT_USAGE, UsageError
from phalanx.launch.lighthouse import Lighthouse, LighthouseProcess, LighthouseSettings

DEFAULT_BIND = "[::]:0"  # every interface, a port the OS picks
# How long a live site that has not asked to join is waited for at an outer step: a site
# whose round took longer than planned (it slowed down) still makes it.
DEFAULT_JOIN_TIMEOUT_S = 60.0
DEFAULT_HEARTBEAT_TIMEOUT_S = 5.0
WILDCARD_HOSTS = ("[::]", "::", "0.0.0.0")


def outer_lighthouse_settings(
    sites: int,
    bind: str = DEFAULT_BIND,
    join_timeout_s: float = DEFAULT_JOIN_TIMEOUT_S,
    heartbeat_timeout_s: float = DEFAULT_HEARTBEAT_TIMEOUT_S,
) -> LighthouseSettings:
    """The settings of an outer lighthouse for `sites` sites; bad values: UsageError."""
    from phalanx.sites.outer_link import outer_quorum_size

    if isinstance(sites, bool) or not isinstance(sites, int) or sites < 1:
        raise UsageError("--sites", "must be a whole number >= 1", "e.g. --sites 2", sites)
    host, sep, port_text = bind.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise UsageError("--bind", "is not HOST:PORT", "write e.g. [::]:29600 or 0.0.0.0:0", bind)
    for flag, seconds in (
        ("--join-timeout-s", join_timeout_s),
        ("--heartbeat-timeout-s", heartbeat_timeout_s),
    ):
        if not seconds > 0:
            raise UsageError(flag, "must be > 0", f"e.g. {flag} 5", seconds)
    return LighthouseSettings(
        bind_host=host,
        port=int(port_text),
        min_replicas=outer_quorum_size(sites),
        join_timeout_ms=round(join_timeout_s * 1000),
        heartbeat_timeout_ms=round(heartbeat_timeout_s * 1000),
    )


class OuterLighthouse:
    """An outer lighthouse in this process; `.address` is HOST:PORT (as `--outer` takes it)."""

    def __init__(self, settings: LighthouseSettings) -> None:
        self.settings = settings
        self._server = Lighthouse(settings)  # its address routes: 127.0.0.1 for wildcards
        self.port: int = self._server.port
        self.address: str = self._server.address.removeprefix("http://")

    def shutdown(self) -> None:
        self._server.shutdown()


class OuterLighthouseProcess:
    """An outer lighthouse in a child process, its chatty log in `log_path`, not the terminal."""

    def __init__(self, settings: LighthouseSettings, log_path: Path) -> None:
        self.settings = settings
        self._process = LighthouseProcess(settings, log_path)  # dies with its parent
        self.port: int = self._process.port
        self.address: str = self._process.address.removeprefix("http://")

    @property
    def alive(self) -> bool:
        return self._process.alive

    def shutdown(self) -> None:
        self._process.shutdown()


def start_outer_lighthouse(
    sites: int,
    bind: str = DEFAULT_BIND,
    join_timeout_s: float = DEFAULT_JOIN_TIMEOUT_S,
    heartbeat_timeout_s: float = DEFAULT_HEARTBEAT_TIMEOUT_S,
) -> OuterLighthouse:
    """Serve an outer lighthouse for `sites` sites in this process until `.shutdown()`."""
    return OuterLighthouse(
        outer_lighthouse_settings(sites, bind, join_timeout_s, heartbeat_timeout_s)
    )


def public_address(settings: LighthouseSettings, port: int) -> str:
    """HOST:PORT for other machines: this host's name when bound to every interface."""
    host = socket.gethostname() if settings.bind_host in WILDCARD_HOSTS else settings.bind_host
    return f"{host}:{port}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m phalanx.sites.outer_lighthouse",
        description="Serve the outer lighthouse of a sites run in the foreground (Ctrl-C stops).",
    )
    parser.add_argument("--sites", type=int, required=True, help="how many sites the run has")
    parser.add_argument("--port", type=int, default=0, help="port to serve on (0: the OS picks)")
    parser.add_argument("--host", default="[::]", help="interface to bind (default: every one)")
    parser.add_argument("--join-timeout-s", type=float, default=DEFAULT_JOIN_TIMEOUT_S)
    parser.add_argument("--heartbeat-timeout-s", type=float, default=DEFAULT_HEARTBEAT_TIMEOUT_S)
    args = parser.parse_args(argv)
    try:
        settings = outer_lighthouse_settings(
            args.sites, f"{args.host}:{args.port}", args.join_timeout_s, args.heartbeat_timeout_s
        )
        server = OuterLighthouse(settings)
    except UsageError as err:
        print(f"error: {err.message()}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:  # a port in use, an address not on this host
        print(
            f"error: --port: cannot bind {args.host}:{args.port} ({err.strerror or err}). "
            "Fix: give a free port of this host, or 0",
            file=sys.stderr,
        )
        return EXIT_USAGE
    print(
        f"outer lighthouse serving at {public_address(settings, server.port)} "
        f"({args.sites} sites, quorum of {settings.min_replicas}); "
        f"sites join with --outer HOST:{server.port}",
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
