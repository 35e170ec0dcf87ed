"""Healing from a live peer: the state streamed tensor by tensor, no pickle, one copy.

torchft's `HTTPTransport` serialises the whole state with `torch.save`, the
receiver buffers the whole stream before it builds any tensor, and it
unpickles what a peer sends (`weights_only=False`). At 300M parameters with
AdamW that is about 3.6 GB held twice on the receiving side, and anyone who
can answer at the address a quorum names runs code in every replica that
heals from it.

This transport sends a small JSON header (the state's structure, every
tensor's dtype and shape) and then each tensor's raw bytes, in order. The
receiver allocates each tensor once and reads its bytes straight into it:
the only extra memory is the received state itself, which `load_state_dict`
then copies into the live parameters (the optimizer adopts its tensors).
Nothing is unpickled; a non-JSON leaf in the state is refused when sent. A
transfer cut short raises before anything live is touched.

The sender serves the live tensors by reference (runtime/state.py says why
that is safe) and refuses requests outside the window torchft opens with
`send_checkpoint` and closes with `disallow_checkpoint` (which waits for a
transfer in progress to finish, so the state cannot change under it).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import urllib.request
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import torch
from torchft.checkpointing.transport import CheckpointTransport

from phalanx.fleetnet.hosts import url_host

_LENGTH = struct.Struct(">Q")


class Writer(Protocol):
    def write(self, data: bytes | memoryview, /) -> int | None: ...


class Reader(Protocol):
    def read(self, size: int, /) -> bytes: ...
    def readinto(self, buffer: memoryview, /) -> int | None: ...


CHUNK_BYTES = 16 * 2**20
FORMAT = "phalanx.heal/1"


# ------------------------------------------------------------ the wire format
def _encode(tree: Any, tensors: list[torch.Tensor]) -> Any:
    """JSON-able structure; tensors appended to `tensors` and replaced by their index."""
    if isinstance(tree, torch.Tensor):
        tensors.append(tree)
        return {"t": len(tensors) - 1}
    if isinstance(tree, dict):
        return {"d": [[_encode(k, tensors), _encode(v, tensors)] for k, v in tree.items()]}
    if isinstance(tree, tuple):
        return {"u": [_encode(v, tensors) for v in tree]}
    if isinstance(tree, list):
        return {"l": [_encode(v, tensors) for v in tree]}
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return {"v": tree}
    raise TypeError(
        f"cannot send a {type(tree).__name__} to a healing peer (tensors and plain data only)"
    )


def _decode(tree: dict[str, Any], tensors: list[torch.Tensor]) -> Any:
    kind, value = next(iter(tree.items()))
    if kind == "t":
        return tensors[int(value)]
    if kind == "d":
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value}
    if kind == "u":
        return tuple(_decode(v, tensors) for v in value)
    if kind == "l":
        return [_decode(v, tensors) for v in value]
    if kind == "v":
        return value
    raise ValueError(f"unknown node {kind!r} in a healing peer's state")


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r} in a healing peer's state")
    return dtype


def _as_bytes(tensor: torch.Tensor) -> memoryview:
    flat = tensor.detach().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")  # type: ignore[arg-type]


def write_state(state: Any, stream: Writer) -> None:
    tensors: list[torch.Tensor] = []
    tree = _encode(state, tensors)
    # One tensor on the CPU at a time: a device's state is staged piece by piece.
    specs = [[str(t.dtype), list(t.shape)] for t in tensors]
    header = json.dumps({"format": FORMAT, "tree": tree, "tensors": specs}).encode()
    stream.write(_LENGTH.pack(len(header)))
    stream.write(header)
    for tensor in tensors:
        data = _as_bytes(tensor.detach().cpu().contiguous())
        for start in range(0, len(data), CHUNK_BYTES):
            stream.write(data[start : start + CHUNK_BYTES])


def _read_exactly(stream: Reader, into: memoryview) -> None:
    got = 0
    while got < len(into):
        count = stream.readinto(into[got : got + CHUNK_BYTES])
        if not count:
            raise ConnectionError(f"a healing peer's state ended after {got} of {len(into)} bytes")
        got += count


def read_state(stream: Reader) -> Any:
    (length,) = _LENGTH.unpack(stream.read(_LENGTH.size))
    header = json.loads(stream.read(length))
    if header.get("format") != FORMAT:
        raise ValueError(f"a healing peer sent format {header.get('format')!r}, not {FORMAT}")
    tensors = []
    for dtype_name, shape in header["tensors"]:
        tensor = torch.empty(shape, dtype=_dtype(dtype_name))  # the one copy of the state
        if tensor.numel():
            _read_exactly(stream, _as_bytes(tensor))
        tensors.append(tensor)
    return _decode(header["tree"], tensors)


# ------------------------------------------------------------ the transport
class _ServingWindow:
    """Requests are served only between `open(step)` and `close()`; close waits for them.

    A request may arrive before the window opens: the healing peer learns of the
    quorum at the same moment as this replica, whose quorum thread then still has to
    stage the state. It waits for the window (as torchft's transport does), up to the
    transport's timeout.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._step: int | None = None
        self._readers = 0

    def open(self, step: int) -> None:
        with self._lock:
            self._step = step
            self._lock.notify_all()

    def close(self) -> None:
        with self._lock:
            self._step = None
            self._lock.wait_for(lambda: self._readers == 0)

    def enter(self, step: int, wait_s: float = 0.0) -> bool:
        with self._lock:
            if not self._lock.wait_for(lambda: self._step == step, timeout=wait_s):
                return False
            self._readers += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self._readers -= 1
            self._lock.notify_all()


class _DualStackServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self) -> None:
        # Healing peers may dial IPv4 or IPv6 (a fleet across hosts): accept both.
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class StreamingStateTransport(CheckpointTransport[Any]):
    """torchft's checkpoint transport interface, streaming phalanx's wire format."""

    def __init__(self, advertise_host: str, timeout: timedelta) -> None:
        self._advertise_host = advertise_host
        self._timeout = timeout
        self._window = _ServingWindow()
        self._state: Any = None
        transport = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")
                if len(parts) != 2 or parts[0] != "checkpoint" or not parts[1].isdigit():
                    self.send_error(400, "expected /checkpoint/STEP")
                    return
                if not transport._window.enter(int(parts[1]), transport._timeout.total_seconds()):
                    self.send_error(409, "that step is not being served now")
                    return
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.end_headers()
                    write_state(transport._state, self.wfile)
                finally:
                    transport._window.leave()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per heal request on stderr helps nobody

        self._server = _DualStackServer(("::", 0), Handler)
        self._server.timeout = timeout.total_seconds()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def address(self) -> str:
        port = self._server.socket.getsockname()[1]
        return f"http://{url_host(self._advertise_host)}:{port}/checkpoint/"

    def metadata(self) -> str:
        return self.address()

    def send_checkpoint(
        self, dst_ranks: list[int], step: int, state_dict: Any, timeout: timedelta
    ) -> None:
        self._state = state_dict
        self._window.open(step)

    def disallow_checkpoint(self) -> None:
        self._window.close()

    def recv_checkpoint(self, src_rank: int, metadata: str, step: int, timeout: timedelta) -> Any:
        with urllib.request.urlopen(f"{metadata}{step}", timeout=timeout.total_seconds()) as reply:
            return read_state(reply)

    def shutdown(self, wait: bool = True) -> None:
        if not wait:  # shutdown() blocks until the serving loop notices (up to 0.5 s)
            threading.Thread(target=self.shutdown, daemon=True).start()
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=self._timeout.total_seconds())
