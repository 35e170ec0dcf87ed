"""Admission: only a process that holds the fleet secret reaches the lighthouse.

torchft's lighthouse is a Rust gRPC server that cannot be taught
authentication. So it binds 127.0.0.1 only, and an `AdmissionGate` listens on
the public address in front of it. Every TCP connection to the gate must pass
a mutual challenge-response before the gate pipes its bytes, both ways, to the
lighthouse that is current. In each worker an `AdmissionTunnel` listens on
127.0.0.1:0; torchft's Rust client (inside `Manager`) connects there, and the
tunnel does the handshake with the gate on its behalf.

A process without the secret never completes the handshake, so it never
reaches the lighthouse, never enters a quorum, and its gradients are never in
an allreduce: torchft builds each step's process group from the quorum.

Handshake (version 2), all fields of fixed length:

    tunnel -> gate   MAGIC | version | client nonce (32 bytes)
    gate -> tunnel   MAGIC | version | gate nonce (32 bytes)
    tunnel -> gate   HMAC-SHA256(secret, "tunnel" | version | nonces | report) | report
    gate             checks it (constant time); for a lighthouse connection it
                     connects to the lighthouse, then
    gate -> tunnel   1 | HMAC-SHA256(secret, "gate" | version | nonces | answer) | answer
                     or 0: admitted, but no lighthouse is up right now

The report says what the connection is for (the lighthouse, or only the
fleet's progress) and the replica's progress; the answer carries the
lighthouse's incarnation and the fleet's progress (`fleet_progress.py`). Both
are inside the MACs, so nobody without the secret can declare the run
complete. The role inside each MAC keeps one side's answer from being replayed
as the other's, and the two fresh nonces keep any old answer from being
replayed at all. The gate reveals nothing keyed before the client has proved itself; the
tunnel checks the gate's proof too, so a replica never talks to a fake gate.
The incarnation names the lighthouse process the connection reaches (it
changes when the lighthouse is restarted): see `FleetSync`'s use of it.

What this does not do (docs/security.md): encrypt or integrity-protect the
traffic after the handshake, or guard the replicas' own ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlparse

from phalanx.fleetnet.fleet_progress import (
    ANSWER_BYTES,
    PURPOSE_LIGHTHOUSE,
    PURPOSE_PROGRESS,
    PURPOSE_REWIND,
    PURPOSES,
    REPORT_BYTES,
    FleetProgress,
    ProgressRecord,
    ProgressReport,
    pack_answer,
    unpack_answer,
)

MAGIC = b"PHLXADM\x00"
VERSION = 2
NONCE_BYTES = 32
MAC_BYTES = 32
HELLO_BYTES = len(MAGIC) + 1 + NONCE_BYTES
HANDSHAKE_TIMEOUT_S = 5.0
# Unauthenticated connections held at once: a flood of them must not exhaust the gate.
MAX_PENDING_HANDSHAKES = 256
REPORT_EVERY_S = 10.0  # one report per peer host and reason this often (counts keep going)
_CHUNK = 64 * 1024
_ADMITTED, _NO_LIGHTHOUSE = b"\x01", b"\x00"

T = TypeVar("T")


class AdmissionRefused(Exception):
    """The other side did not prove it holds the fleet secret."""


class SecretRejected(AdmissionRefused):
    """The gate closed the connection on our proof: we do not hold its secret."""


class LighthouseUnavailable(Exception):
    """The gate admitted us, but no lighthouse is up behind it right now."""


def _proof(
    secret: bytes, role: bytes, client_nonce: bytes, gate_nonce: bytes, payload: bytes
) -> bytes:
    message = role + bytes([VERSION]) + client_nonce + gate_nonce + payload
    return hmac.new(secret, message, hashlib.sha256).digest()


def _hello(nonce: bytes) -> bytes:
    return MAGIC + bytes([VERSION]) + nonce


def _parse_hello(data: bytes) -> bytes:
    if data[: len(MAGIC)] != MAGIC:
        raise AdmissionRefused("not the admission protocol")
    if data[len(MAGIC)] != VERSION:
        raise AdmissionRefused(f"admission protocol version {data[len(MAGIC)]}, not {VERSION}")
    return data[len(MAGIC) + 1 :]


async def client_handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    secret: bytes,
    report: ProgressReport | None = None,
) -> tuple[int, FleetProgress]:
    """The tunnel's side: the lighthouse's incarnation and the fleet's progress."""
    request = (report or ProgressReport()).pack()
    client_nonce = secrets.token_bytes(NONCE_BYTES)
    writer.write(_hello(client_nonce))
    await writer.drain()
    try:
        gate_nonce = _parse_hello(await reader.readexactly(HELLO_BYTES))
    except asyncio.IncompleteReadError:
        raise AdmissionRefused("the gate closed the connection before its hello") from None
    writer.write(_proof(secret, b"tunnel", client_nonce, gate_nonce, request) + request)
    await writer.drain()
    try:
        status = await reader.readexactly(1)
    except asyncio.IncompleteReadError:
        raise SecretRejected(
            "the gate refused our proof: this --secret-file is not the fleet's secret"
        ) from None
    if status == _NO_LIGHTHOUSE:
        raise LighthouseUnavailable("no lighthouse is up behind the gate")
    try:
        answer = await reader.readexactly(MAC_BYTES + ANSWER_BYTES)
    except asyncio.IncompleteReadError:
        raise AdmissionRefused("the gate closed the connection before its proof") from None
    payload = answer[MAC_BYTES:]
    expected = _proof(secret, b"gate", client_nonce, gate_nonce, payload)
    if status != _ADMITTED or not hmac.compare_digest(answer[:MAC_BYTES], expected):
        raise AdmissionRefused("the gate does not hold the fleet secret (or is not a gate)")
    return unpack_answer(payload)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


async def splice(
    a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    b: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    """Pipe bytes both ways until either side closes; then close both (gRPC needs no half-close)."""
    tasks = {asyncio.ensure_future(_copy(a[0], b[1])), asyncio.ensure_future(_copy(b[0], a[1]))}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await _close(a[1])
        await _close(b[1])


class _LoopThread:
    """A private asyncio loop in a daemon thread, driven from synchronous code."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def stop(self) -> None:
        if not self.loop.is_running():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(cancel_all(), timeout_s=5.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5.0)
        if not self._thread.is_alive():
            self.loop.close()


def split_address(address: str) -> tuple[str, int]:
    """'http://host:port', 'host:port' or '[v6]:port' -> (host, port)."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if parsed.hostname is None or parsed.port is None:
        raise ValueError(f"not HOST:PORT: {address!r}")
    return parsed.hostname, parsed.port


@dataclass
class Refusal:
    """A connection the gate closed because it did not prove it holds the secret."""

    peer: str
    reason: str
    count_from_peer: int  # refusals from this peer host so far, this one included


class _RateLimit:
    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(key, -self.every_s) < self.every_s:
            return False
        self._last[key] = now
        return True


class AdmissionGate:
    """Listens on the public address; admits only holders of the secret to the lighthouse.

    The lighthouse behind it may change (`set_upstream`): it is restarted when
    it dies, and replicas keep the gate's address. While none is up
    (`clear_upstream`), admitted connections are told so and closed.
    """

    def __init__(
        self,
        secret: bytes,
        host: str = "127.0.0.1",
        port: int = 0,
        on_refused: Callable[[Refusal], None] | None = None,
        handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
        max_pending: int = MAX_PENDING_HANDSHAKES,
    ) -> None:
        self._secret = secret
        self._on_refused = on_refused
        self.handshake_timeout_s = handshake_timeout_s
        self.max_pending = max_pending
        self._upstream: tuple[str, int] | None = None
        self.incarnation = 0
        self.refused = 0
        self.refused_by_peer: dict[str, int] = {}
        self.admitted = 0
        self.unavailable = 0  # admitted while no lighthouse was up
        self.progress = ProgressRecord()  # the fleet's progress, as its replicas report it
        self._pending = 0
        self._report = _RateLimit(REPORT_EVERY_S)
        self._loop = _LoopThread("phalanx-admission-gate")
        try:
            self._server = self._loop.run(asyncio.start_server(self._serve, host, port))
        except BaseException:
            self._loop.stop()
            raise
        self.host = host
        self.port: int = self._server.sockets[0].getsockname()[1]

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def set_upstream(self, host: str, port: int) -> int:
        """Forward admitted connections to this lighthouse from now on; returns its incarnation."""
        # Strictly increasing, and larger than any earlier gate's on this clock: a
        # restarted `phalanx lighthouse` process must not reuse an incarnation.
        self.incarnation = max(time.time_ns(), self.incarnation + 1)
        self._upstream = (host, port)
        return self.incarnation

    def clear_upstream(self) -> None:
        self._upstream = None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._server.close()
        self._loop.stop()

    def _refuse(self, peer: str, reason: str) -> None:
        self.refused += 1
        host = peer.rsplit(":", 1)[0]
        self.refused_by_peer[host] = self.refused_by_peer.get(host, 0) + 1
        if self._on_refused is not None and self._report.allow(f"{host} {reason}"):
            with contextlib.suppress(Exception):  # a reporting error must not open the gate
                self._on_refused(Refusal(peer, reason, self.refused_by_peer[host]))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # the gate closing: nothing to report
            await self._serve_one(reader, writer)

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        info = writer.get_extra_info("peername") or ("?", 0)
        peer = f"{info[0]}:{info[1]}"
        if self._pending >= self.max_pending:
            self._refuse(peer, "too many handshakes in progress")
            await _close(writer)
            return
        self._pending += 1
        try:
            upstream = await asyncio.wait_for(
                self._admit(reader, writer), timeout=self.handshake_timeout_s
            )
        except AdmissionRefused as err:
            self._refuse(peer, str(err))
            upstream = None
        except asyncio.IncompleteReadError:
            self._refuse(peer, "closed during the handshake")
            upstream = None
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            self._refuse(peer, f"no handshake within {self.handshake_timeout_s:g} s")
            upstream = None
        except (ConnectionError, OSError):
            upstream = None
        finally:
            self._pending -= 1
        if upstream is None:
            await _close(writer)
            return
        await splice((reader, writer), upstream)

    async def _admit(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        client_nonce = _parse_hello(await reader.readexactly(HELLO_BYTES))
        gate_nonce = secrets.token_bytes(NONCE_BYTES)
        writer.write(_hello(gate_nonce))
        await writer.drain()
        claimed = await reader.readexactly(MAC_BYTES + REPORT_BYTES)
        request = claimed[MAC_BYTES:]
        if not hmac.compare_digest(
            claimed[:MAC_BYTES], _proof(self._secret, b"tunnel", client_nonce, gate_nonce, request)
        ):
            raise AdmissionRefused("wrong proof: the peer does not hold the fleet secret")
        report = ProgressReport.unpack(request)
        if report.purpose not in PURPOSES:
            raise AdmissionRefused(f"unknown purpose {report.purpose}")
        progress = self.progress.update(report)
        target, incarnation = self._upstream, self.incarnation
        upstream = None
        if report.purpose == PURPOSE_LIGHTHOUSE and target is not None:
            with contextlib.suppress(OSError):
                upstream = await asyncio.open_connection(*target)
        if report.purpose == PURPOSE_LIGHTHOUSE and upstream is None:
            self.unavailable += 1
            writer.write(_NO_LIGHTHOUSE)
            await writer.drain()
            return None
        self.admitted += report.purpose == PURPOSE_LIGHTHOUSE
        answer = pack_answer(incarnation, progress)
        proof = _proof(self._secret, b"gate", client_nonce, gate_nonce, answer)
        writer.write(_ADMITTED + proof + answer)
        await writer.drain()
        return upstream  # None for a progress report: the gate closes it


class AdmissionTunnel:
    """In a worker: a loopback port for torchft's client that leads through the gate.

    `incarnation` is the newest lighthouse incarnation any of its connections
    reached. A quorum answer comes over a connection that was admitted before
    it, from a lighthouse that was alive then; so when the answer arrives,
    this is the incarnation that gave it (a lighthouse restart would have to
    complete within the instant between the two to fool it).
    """

    def __init__(
        self,
        secret: bytes,
        gate: str,
        handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
        log: Callable[[str], None] | None = None,
        launched_at_s: float | None = None,
    ) -> None:
        self._secret = secret
        self._gate = split_address(gate)
        # Wall-clock start of this replica's launcher (the gate tells runs apart by it).
        self.launched_at_s = time.time() if launched_at_s is None else launched_at_s
        self.handshake_timeout_s = handshake_timeout_s
        self._log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self._report = _RateLimit(REPORT_EVERY_S)
        self.incarnation: int | None = None
        self.fleet: FleetProgress | None = None  # the newest progress the gate told us
        self._step_report: Any = None  # the step report on its way (concurrent Future)
        self.refused = 0
        self.secret_rejected = 0  # of those refusals: the gate did not take our proof
        self.unavailable = 0
        self._loop = _LoopThread("phalanx-admission-tunnel")
        try:
            self._server = self._loop.run(asyncio.start_server(self._serve, "127.0.0.1", 0))
        except BaseException:
            self._loop.stop()
            raise
        self.port: int = self._server.sockets[0].getsockname()[1]

    @property
    def address(self) -> str:
        """What torchft's Manager takes as `lighthouse_addr`."""
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._server.close()
        self._loop.stop()

    def _progress_report(
        self, purpose: int, step: int = 0, complete: bool = False
    ) -> ProgressReport:
        return ProgressReport(purpose, step, complete, time.time() - self.launched_at_s)

    def exchange_progress(
        self, step: int, complete: bool, rewind: bool = False
    ) -> FleetProgress | None:
        """Tell the gate our committed steps (and that we finished); return the fleet's.

        None when the gate cannot be reached or refuses us: the caller carries on
        as if it had not asked (the lighthouse decides whether it can train).
        `rewind`: our step replaces the fleet's newest (see fleet_progress.py).
        """
        purpose = PURPOSE_REWIND if rewind else PURPOSE_PROGRESS
        report = self._progress_report(purpose, step, complete)
        try:
            return self._loop.run(self._exchange(report), timeout_s=2 * self.handshake_timeout_s)
        except Exception as err:  # unreachable, refused, timed out: not knowing is not fatal
            self._say("progress", f"admission: could not exchange progress with the gate ({err!r})")
            return None

    def report_step(self, step: int) -> None:
        """Tell the gate a step we committed, without waiting for its answer.

        One report at a time: while one is on its way, newer steps are dropped (the
        next one after it carries a newer step anyway).
        """
        if self._step_report is not None and not self._step_report.done():
            return
        report = self._progress_report(PURPOSE_PROGRESS, step)
        self._step_report = asyncio.run_coroutine_threadsafe(
            self._quietly(self._exchange(report)), self._loop.loop
        )

    async def _quietly(self, exchange: Coroutine[Any, Any, FleetProgress]) -> None:
        try:
            await exchange
        except Exception as err:  # the next step's report tries again
            self._say("progress", f"admission: a step report did not reach the gate ({err!r})")

    async def _exchange(self, report: ProgressReport) -> FleetProgress:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(*self._gate), timeout=self.handshake_timeout_s
        )
        try:
            _, progress = await asyncio.wait_for(
                client_handshake(reader, writer, self._secret, report),
                timeout=self.handshake_timeout_s,
            )
        finally:
            await _close(writer)
        self.fleet = progress
        return progress

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # the tunnel closing
            await self._serve_one(reader, writer)

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        gate: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            gate = await asyncio.wait_for(
                asyncio.open_connection(*self._gate), timeout=self.handshake_timeout_s
            )
            incarnation, self.fleet = await asyncio.wait_for(
                client_handshake(
                    gate[0], gate[1], self._secret, self._progress_report(PURPOSE_LIGHTHOUSE)
                ),
                timeout=self.handshake_timeout_s,
            )
        except AdmissionRefused as err:
            self.refused += 1
            self.secret_rejected += isinstance(err, SecretRejected)
            self._say("refused", f"admission: {err}")
            incarnation = None
        except LighthouseUnavailable:
            self.unavailable += 1
            self._say("unavailable", "admission: admitted, but the lighthouse is down; retrying")
            incarnation = None
        # asyncio.TimeoutError: wait_for's, not the builtin TimeoutError before Python 3.11
        except (asyncio.TimeoutError, ConnectionError, OSError, asyncio.IncompleteReadError) as err:
            gate_text = f"{self._gate[0]}:{self._gate[1]}"
            self._say("unreachable", f"admission: cannot reach the gate at {gate_text} ({err!r})")
            incarnation = None
        if incarnation is None or gate is None:
            if gate is not None:
                await _close(gate[1])
            await _close(writer)
            return
        if self.incarnation is None or incarnation > self.incarnation:
            self.incarnation = incarnation
        await splice((reader, writer), gate)

    def _say(self, key: str, line: str) -> None:
        if self._report.allow(key):
            self._log(line)
