"""`phalanx power-helper`: the one small process that runs as root to set power limits.

Training runs unprivileged; only this helper holds the right to change power
limits, and it can do nothing else: three operations (get, set, restore) on
devices named by vendor kind and index, every field checked strictly, every
limit checked against the device's own range. It never runs a command.

Access is the socket file's: connecting to a Unix socket needs write
permission on it, so mode 0660 with `--group phalanx` lets exactly the members
of that group set limits. The helper remembers the limit each device had
before its first change and puts it back on `restore` and when it exits
(SIGTERM, SIGINT, SIGHUP), so a finished or crashed run does not leave GPUs
capped.
"""

from __future__ import annotations

import contextlib
import grp
import json
import math
import os
import signal
import socket
import socketserver
import stat
import struct
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from phalanx.energy.power_control import (
    BACKENDS,
    MAX_LINE_BYTES,
    BackendError,
    PermissionDenied,
    PowerBackend,
    range_problem,
)
from phalanx.errors import UsageError

OPS = ("get", "set", "restore")
DEFAULT_MODE = 0o660
# An idle or stalled client frees its thread after this long.
CONNECTION_TIMEOUT_S = 30.0


class RequestError(Exception):
    """A request the helper refuses; str() is sent back as the error."""


def _log_stderr(line: str) -> None:
    print(f"phalanx power-helper: {line}", file=sys.stderr, flush=True)


def _reject_constant(name: str) -> Any:
    raise RequestError(f"{name} is not a number the helper accepts")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise RequestError("a field appears twice")
    return dict(pairs)


def parse_request(line: bytes) -> dict[str, Any]:
    """The request as a dict with its fields checked for shape (not yet against devices)."""
    try:
        text = line.decode("utf-8")
        request = json.loads(
            text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates
        )
    except UnicodeDecodeError as err:
        raise RequestError("the request is not UTF-8") from err
    except json.JSONDecodeError as err:
        raise RequestError(f"the request is not JSON ({err.msg})") from err
    if not isinstance(request, dict):
        raise RequestError("the request must be a JSON object")
    op = request.get("op")
    if op not in OPS:
        raise RequestError(f"op must be one of {', '.join(OPS)}")
    allowed = {"op", "kind", "index"} | ({"limit_w"} if op == "set" else set())
    unknown = sorted(set(request) - allowed)
    missing = sorted(allowed - set(request))
    if unknown:
        raise RequestError(f"unknown field(s) for {op}: {', '.join(unknown)}")
    if missing:
        raise RequestError(f"missing field(s) for {op}: {', '.join(missing)}")
    if not isinstance(request["kind"], str):
        raise RequestError("kind must be a string")
    if type(request["index"]) is not int:  # bool is an int subclass: not an index
        raise RequestError("index must be an integer")
    if op == "set":
        limit_w = request["limit_w"]
        if (
            isinstance(limit_w, bool)
            or not isinstance(limit_w, (int, float))
            or not math.isfinite(limit_w)
        ):
            raise RequestError("limit_w must be a finite number of watts")
    return request


class PowerHelper:
    """The helper's request logic, without sockets: validate, act, remember originals.

    `libraries` maps a kind ("nvidia", "amd") to its initialised vendor module
    (pynvml, amdsmi); only those kinds are served.
    """

    def __init__(
        self,
        libraries: Mapping[str, ModuleType],
        log: Callable[[str], None] = _log_stderr,
    ) -> None:
        unknown = set(libraries) - set(BACKENDS)
        if unknown:
            raise ValueError(f"unknown device kinds: {sorted(unknown)}")
        self.libraries = dict(libraries)
        self.log = log
        # One lock for all devices: requests are rare, and it keeps a set from
        # racing the restore at shutdown.
        self._lock = threading.Lock()
        self._originals_w: dict[tuple[str, int], float] = {}
        self._closed = False

    def changed(self) -> dict[tuple[str, int], float]:
        """Devices changed and not yet restored, with the limit each had before."""
        with self._lock:
            return dict(self._originals_w)

    def handle_line(self, line: bytes, peer: str = "?") -> bytes:
        """One reply line for one request line; never raises."""
        try:
            reply = self.handle(parse_request(line), peer)
        except RequestError as err:
            reply = {"ok": False, "error": str(err)}
        except Exception as err:  # a vendor-library failure must not stop the helper
            reply = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        return json.dumps(reply, allow_nan=False).encode() + b"\n"

    def handle(self, request: dict[str, Any], peer: str = "?") -> dict[str, Any]:
        kind, index, op = request["kind"], request["index"], request["op"]
        with self._lock:
            if self._closed:
                raise RequestError("the helper is shutting down")
            backend = self._open(kind, index)
            if op == "set":
                self._set(backend, kind, index, request["limit_w"], peer)
            elif op == "restore":
                self._restore(backend, kind, index, peer)
            low_w, high_w = backend.range_w()
            return {
                "ok": True,
                "kind": kind,
                "index": index,
                "limit_w": backend.limit_w(),
                "min_w": low_w,
                "max_w": high_w,
            }

    def _open(self, kind: str, index: int) -> PowerBackend:
        module = self.libraries.get(kind)
        if module is None:
            served = ", ".join(sorted(self.libraries)) or "none"
            raise RequestError(f"kind must be one this helper serves ({served})")
        backend_cls = BACKENDS[kind]
        count = backend_cls.count(module)
        if not 0 <= index < count:
            raise RequestError(f"index must be in [0, {count}) for {kind}")
        try:
            return backend_cls.open(module, index)
        except BackendError as err:
            raise RequestError(str(err)) from err

    def _write(self, backend: PowerBackend, watts: float) -> None:
        try:
            backend.write_limit_w(watts)
        except PermissionDenied as err:
            raise RequestError(f"{err}; run the helper as root") from err
        except BackendError as err:
            raise RequestError(str(err)) from err

    def _set(self, backend: PowerBackend, kind: str, index: int, watts: float, peer: str) -> None:
        low_w, high_w = backend.range_w()
        problem = range_problem(watts, low_w, high_w)
        if problem is not None:
            raise RequestError(f"{kind}:{index}: {problem}")
        before_w = backend.limit_w()
        self._write(backend, watts)
        self._originals_w.setdefault((kind, index), before_w)
        self.log(f"{kind}:{index} limit {before_w:g} W -> {watts:g} W (peer {peer})")

    def _restore(self, backend: PowerBackend, kind: str, index: int, peer: str) -> None:
        original_w = self._originals_w.get((kind, index))
        if original_w is None:
            return  # never changed by this helper: nothing to put back
        self._write(backend, original_w)
        del self._originals_w[(kind, index)]
        self.log(f"{kind}:{index} limit restored to {original_w:g} W (peer {peer})")

    def close(self) -> list[str]:
        """Refuse further requests and put back every changed limit; returns the failures."""
        failures = []
        with self._lock:
            self._closed = True
            for (kind, index), original_w in sorted(self._originals_w.items()):
                try:
                    backend = BACKENDS[kind].open(self.libraries[kind], index)
                    backend.write_limit_w(original_w)
                    self.log(f"{kind}:{index} limit restored to {original_w:g} W at exit")
                except Exception as err:  # try every device even if one fails
                    failures.append(f"{kind}:{index}: cannot restore {original_w:g} W: {err}")
            self._originals_w.clear()
        for failure in failures:
            self.log(failure)
        return failures


def _peer(conn: socket.socket) -> str:
    """The connecting process, for the log (Linux only; '?' elsewhere)."""
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", creds)
        return f"pid {pid} uid {uid}"
    except (AttributeError, OSError):
        return "?"


class _Handler(socketserver.StreamRequestHandler):
    timeout = CONNECTION_TIMEOUT_S
    server: PowerHelperServer

    def handle(self) -> None:
        peer = _peer(self.connection)
        try:
            while True:
                line = self.rfile.readline(MAX_LINE_BYTES + 1)
                if not line:
                    return
                if len(line) > MAX_LINE_BYTES:
                    # The rest of the line is unread garbage: answer and hang up.
                    error = {"ok": False, "error": f"request longer than {MAX_LINE_BYTES} bytes"}
                    self.wfile.write(json.dumps(error).encode() + b"\n")
                    return
                self.wfile.write(self.server.helper.handle_line(line, peer))
        except OSError:
            return  # the client went away or stalled past the timeout


class PowerHelperServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """The helper on a Unix socket, created with `mode` and owned by `group`."""

    daemon_threads = True

    def __init__(
        self,
        socket_path: str | Path,
        helper: PowerHelper,
        mode: int = DEFAULT_MODE,
        group: str | None = None,
    ) -> None:
        self.helper = helper
        self.socket_path = str(socket_path)
        self.mode = mode
        self.gid = -1 if group is None else group_id(group)
        check_socket_path(self.socket_path)
        self._inode: int | None = None
        try:
            super().__init__(self.socket_path, _Handler)
        except OSError as err:
            raise UsageError(
                "--socket", f"cannot listen there: {err}", "choose another path", self.socket_path
            ) from err

    def server_bind(self) -> None:
        # Create the socket file private, then open it up: never briefly wider than asked.
        old_umask = os.umask(0o177)
        try:
            self.socket.bind(self.socket_path)
        finally:
            os.umask(old_umask)
        os.chown(self.socket_path, -1, self.gid)
        os.chmod(self.socket_path, self.mode)
        self._inode = os.stat(self.socket_path).st_ino

    def handle_error(self, request: Any, client_address: Any) -> None:
        # One line instead of socketserver's traceback; the helper keeps serving.
        self.helper.log(f"error while serving a client: {sys.exc_info()[1]!r}")

    def server_close(self) -> None:
        super().server_close()
        # Remove our socket file only: another helper may have replaced it since.
        with contextlib.suppress(OSError):
            if self._inode is not None and os.stat(self.socket_path).st_ino == self._inode:
                os.unlink(self.socket_path)
        self._inode = None


def group_id(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError as err:
        raise UsageError(
            "--group", "no such group", "create it (groupadd phalanx) or name another", name
        ) from err


def check_socket_path(path: str) -> None:
    """Refuse a path the helper cannot or must not use; remove a stale socket of a dead helper."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(
            "--socket",
            f"directory {parent} does not exist",
            "create it first (e.g. /run/phalanx; systemd's RuntimeDirectory= does it)",
            path,
        )
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        # The helper runs as root: it must never delete a file it did not make.
        raise UsageError("--socket", "exists and is not a socket", "choose another path", path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # nobody listens: left over from a helper that was killed
            return
    raise UsageError(
        "--socket", "another power helper is already listening there", "stop it first", path
    )


def parse_mode(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise UsageError("--mode", "not an octal file mode", "use e.g. 0660", text)
    return mode


def load_libraries() -> dict[str, ModuleType]:
    """The vendor libraries that load on this host, by kind."""
    from phalanx.devices.telemetry.amd import load_amdsmi
    from phalanx.devices.telemetry.nvml import load_nvml

    found = {"nvidia": load_nvml(), "amd": load_amdsmi()}
    return {kind: module for kind, module in found.items() if module is not None}


def run_helper(
    socket_path: str,
    group: str | None = None,
    mode: int = DEFAULT_MODE,
    libraries: Mapping[str, ModuleType] | None = None,
    log: Callable[[str], None] = _log_stderr,
) -> list[str]:
    """Serve until SIGTERM/SIGINT/SIGHUP, then restore every changed limit.

    Returns the restores that failed (empty when all went back). Must run in
    the main thread (signal handlers).
    """
    check_socket_path(socket_path)  # before anything else: a typo fails in an instant
    if group is not None:
        group_id(group)
    libs = load_libraries() if libraries is None else dict(libraries)
    if not libs:
        raise UsageError(
            "power-helper",
            "neither NVML (nvidia-ml-py) nor amdsmi loads here: there is no limit to control",
            "install them into the Python the helper runs with (sudo uses root's environment)",
        )
    if os.geteuid() != 0:
        log("not running as root: NVML and amdsmi will refuse every set with NO_PERMISSION")
    helper = PowerHelper(libs, log=log)
    server = PowerHelperServer(socket_path, helper, mode=mode, group=group)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only the first signal stops the loop; later ones must not cut the restore short.
        # It must not raise: an exception raised here while a client is being served is
        # caught by socketserver's handle_error, and the loop would serve on forever.
        # shutdown() waits for serve_forever to return, so it runs in a thread of its own.
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous: dict[signal.Signals, Any] = {}
    failures: list[str] = []
    try:
        for s in signals:
            previous[s] = signal.signal(s, on_signal)
        log(
            f"serving {', '.join(sorted(libs))} on {socket_path} "
            f"(mode {mode:04o}, group {group or 'of this user'})"
        )
        server.serve_forever()
    finally:
        stopping.set()
        try:
            failures = helper.close()  # first: nothing may stand between a stop and the restore
            server.server_close()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    log("stopped")
    return failures
