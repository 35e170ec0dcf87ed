"""The quorum server (torchft's Lighthouse), always on an OS-chosen or explicit port.

The launcher runs it in a child process: its chatty log goes to
`logs/lighthouse.log` instead of the user's terminal, and it can be stopped
and restarted on its own.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from phalanx.launch.orphans import die_with_parent
from phalanx.launch.output_pump import OutputPump
from phalanx.launch.process_tree import close_pipes


@dataclass
class LighthouseSettings:
    bind_host: str = "127.0.0.1"
    port: int = 0  # 0: the OS picks a free port (never a fixed default that may be taken)
    min_replicas: int = 1
    # How long a quorum waits for a replica that heartbeats but has not asked to join.
    # Long on purpose: a replica that woke from a freeze must not get a quorum of its
    # own while the others are busy computing (a second history); dead or frozen
    # replicas stop heartbeating and are dropped after heartbeat_timeout_ms anyway.
    join_timeout_ms: int = 30_000
    # A replica whose heartbeats stop for this long is dropped from the next quorum.
    heartbeat_timeout_ms: int = 2000
    quorum_tick_ms: int = 20


def _server_class() -> Any:
    """torchft's LighthouseServer, without importing torch where that can be avoided.

    `torchft.coordination` imports torchft's package, which imports torch: about
    5 s on a busy host, all of it in the pause of a lighthouse restart. The
    server is a self-contained Rust extension, so a process that has not
    imported torchft yet loads the extension alone (about 0.1 s).
    """
    if "torchft" not in sys.modules:
        with contextlib.suppress(Exception):
            package = importlib.util.find_spec("torchft")
            for folder in (package.submodule_search_locations or []) if package else []:
                for path in sorted(Path(folder).glob("_torchft*.so")):
                    spec = importlib.util.spec_from_file_location("torchft._torchft", path)
                    if spec is not None and spec.loader is not None:
                        module = importlib.util.module_from_spec(spec)
                        spec.loader.exec_module(module)
                        return module.LighthouseServer
    from torchft.coordination import LighthouseServer

    return LighthouseServer


class Lighthouse:
    """An in-process lighthouse (for `phalanx lighthouse` and tests)."""

    def __init__(self, settings: LighthouseSettings) -> None:
        LighthouseServer = _server_class()
        self._server = LighthouseServer(
            bind=f"{settings.bind_host}:{settings.port}",
            min_replicas=settings.min_replicas,
            join_timeout_ms=settings.join_timeout_ms,
            quorum_tick_ms=settings.quorum_tick_ms,
            heartbeat_timeout_ms=settings.heartbeat_timeout_ms,
        )
        # torchft advertises the machine's hostname; replicas need an address that routes.
        port = urlparse(self._server.address()).port
        host = (
            settings.bind_host
            if settings.bind_host not in ("0.0.0.0", "::", "[::]")
            else "127.0.0.1"
        )
        self.address = f"http://{host}:{port}"
        self.port = port

    def shutdown(self) -> None:
        self._server.shutdown()


class LighthouseProcess:
    """A lighthouse in a child process, logging to a file."""

    def __init__(self, settings: LighthouseSettings, log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # Its log through a pipe the launcher copies: torchft's Rust server stops forming
        # quorums (and stays alive) when a log write fails on a full disk.
        self._process = subprocess.Popen(
            [sys.executable, "-m", "phalanx.launch.lighthouse", json.dumps(asdict(settings))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        assert self._process.stdout is not None and self._process.stderr is not None
        self._log = OutputPump(self._process.stderr, log_path, "lighthouse log")
        line = self._process.stdout.readline()
        if not line:
            self._process.wait()
            self._log.join(2.0)
            last = "".join(f" ({line})" for line in self._log.lines()[-1:])
            raise RuntimeError(f"the lighthouse did not start{last}; see {log_path}")
        info = json.loads(line)
        self.address: str = info["address"]
        self.port: int = info["port"]

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    @property
    def exit_code(self) -> int | None:
        return self._process.poll()

    def shutdown(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._log.join(2.0)  # its last lines into the log
        close_pipes(self._process)


def _serve(settings_json: str) -> None:
    server = Lighthouse(LighthouseSettings(**json.loads(settings_json)))
    print(json.dumps({"address": server.address, "port": server.port}), flush=True)
    # Serve until the parent closes our stdin (it exited or stopped us).
    stop = threading.Event()

    def wait_for_parent() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_parent, daemon=True).start()
    stop.wait()
    server.shutdown()


if __name__ == "__main__":
    from phalanx import quick_exit

    quick_exit.install()
    _serve(sys.argv[1])
