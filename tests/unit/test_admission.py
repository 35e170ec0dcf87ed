"""The fleet secret file and the admission handshake (gate and tunnel), on loopback."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time

import pytest

from phalanx.errors import UsageError
from phalanx.fleetnet.admission import (
    HELLO_BYTES,
    MAGIC,
    VERSION,
    AdmissionGate,
    AdmissionTunnel,
    split_address,
)
from phalanx.fleetnet.fleet_progress import (
    ANSWER_BYTES,
    PURPOSE_PROGRESS,
    PURPOSE_REWIND,
    REPORT_BYTES,
    FleetProgress,
    ProgressRecord,
    ProgressReport,
)
from phalanx.fleetnet.fleet_secret import generate_secret_file, load_or_create, load_secret

pytestmark = pytest.mark.timeout(60)
SECRET = bytes(range(32))
WRONG = bytes(32)
DEADLINE_S = 20.0


# ----------------------------------------------------------------- secret file
def test_generated_secret_is_private_and_loads(tmp_path):
    path = generate_secret_file(tmp_path / "sub" / "fleet.secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = load_secret(path)
    assert len(secret) == 32
    assert load_secret(generate_secret_file(path)) != secret  # a new one replaces the old
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o660])
def test_loose_permissions_are_refused_with_the_fix(tmp_path, mode):
    path = generate_secret_file(tmp_path / "fleet.secret")
    os.chmod(path, mode)
    with pytest.raises(UsageError) as err:
        load_secret(path)
    message = err.value.message()
    assert f"chmod 600 {path}" in message and "group or others" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("content", "needle"),
    [("", "is empty"), ("\n", "is empty"), ("abc\n", "64 hex"), ("zz" * 32, "64 hex")],
)
def test_empty_or_malformed_secret_is_refused(tmp_path, content, needle):
    path = tmp_path / "fleet.secret"
    path.write_text(content)
    os.chmod(path, 0o600)
    with pytest.raises(UsageError) as err:
        load_secret(path)
    assert needle in err.value.message() and str(path) in err.value.message()


def test_missing_secret_and_load_or_create(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_secret(tmp_path / "nope")
    secret, created = load_or_create(tmp_path / "new.secret")
    assert created
    assert load_or_create(tmp_path / "new.secret") == (secret, False)


def test_cli_maps_a_loose_secret_file_to_exit_2(tmp_path):
    from tests.fleet_helpers import MLP, phalanx

    path = generate_secret_file(tmp_path / "fleet.secret")
    os.chmod(path, 0o644)
    result = phalanx(
        "run", str(MLP), "--out", str(tmp_path / "run"), "--secret-file", str(path), timeout_s=60
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --secret-file")
    assert f"chmod 600 {path}" in lines[0]


# ------------------------------------------------------------------ handshake
class EchoServer:
    """Stands in for the lighthouse: echoes bytes back."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def gate():
    refusals = []
    echo = EchoServer()
    gate = AdmissionGate(SECRET, on_refused=refusals.append, handshake_timeout_s=1.0)
    gate.set_upstream("127.0.0.1", echo.port)
    gate.refusals = refusals  # type: ignore[attr-defined]
    yield gate
    gate.close()
    echo.close()


def _through(tunnel: AdmissionTunnel, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", tunnel.port), timeout=DEADLINE_S) as conn:
        conn.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = conn.recv(4096)
            if not chunk:
                break
            received += chunk
        return received


def _closed_without_data(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as conn:
        conn.sendall(b"hello")
        try:
            return conn.recv(4096) == b""
        except ConnectionResetError:
            # Closed with our bytes unread: the kernel answers them with a reset, not an
            # end of stream (a CI run of the 3.10 check). Linux hands over whatever was
            # received before a reset first, so a reset here means nothing was sent.
            return True


def test_right_secret_is_piped_through_both_ways(gate):
    tunnel = AdmissionTunnel(SECRET, f"http://{gate.address}")
    try:
        payload = os.urandom(200_000)
        assert _through(tunnel, payload) == payload
        assert gate.admitted == 1 and gate.refused == 0
        assert tunnel.incarnation == gate.incarnation
    finally:
        tunnel.close()


def test_wrong_secret_never_reaches_the_lighthouse(gate):
    lines: list[str] = []
    tunnel = AdmissionTunnel(WRONG, gate.address, log=lines.append)
    try:
        assert _closed_without_data(tunnel.port)
        assert gate.admitted == 0 and gate.refused == 1
        assert tunnel.refused == tunnel.secret_rejected == 1 and tunnel.incarnation is None
        assert "not the fleet's secret" in lines[0]
        (refusal,) = gate.refusals
        assert refusal.peer.startswith("127.0.0.1:") and "wrong proof" in refusal.reason
    finally:
        tunnel.close()


def test_a_fake_gate_is_not_trusted_by_the_tunnel():
    """A gate that admits anyone but cannot prove the secret gets no traffic from a replica."""
    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def fake_gate() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(HELLO_BYTES)
            conn.sendall(MAGIC + bytes([VERSION]) + os.urandom(32))
            wanted = 32 + REPORT_BYTES  # the tunnel's proof and its report
            while wanted > 0:
                wanted -= len(conn.recv(wanted))
            conn.sendall(b"\x01" + os.urandom(32) + bytes(ANSWER_BYTES))  # "admitted"
            while data := conn.recv(4096):
                received.append(data)

    thread = threading.Thread(target=fake_gate, daemon=True)
    thread.start()
    lines: list[str] = []
    tunnel = AdmissionTunnel(SECRET, f"127.0.0.1:{server.getsockname()[1]}", log=lines.append)
    try:
        assert _closed_without_data(tunnel.port)
        thread.join(DEADLINE_S)
        assert received == [] and tunnel.incarnation is None
        assert "does not hold the fleet secret" in lines[0]
    finally:
        tunnel.close()
        server.close()


def test_grpc_or_garbage_is_refused_at_once(gate):
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(HELLO_BYTES)
    with socket.create_connection(("127.0.0.1", gate.port), timeout=DEADLINE_S) as conn:
        conn.sendall(preface)
        assert conn.recv(4096) == b""  # closed, nothing revealed
    assert gate.refused == 1 and "not the admission protocol" in gate.refusals[0].reason


def test_wrong_version_is_refused(gate):
    with socket.create_connection(("127.0.0.1", gate.port), timeout=DEADLINE_S) as conn:
        conn.sendall(MAGIC + bytes([VERSION + 1]) + bytes(32))
        assert conn.recv(4096) == b""
    assert "version" in gate.refusals[0].reason


def test_slow_or_half_open_client_is_cut_after_the_timeout(gate):
    with socket.create_connection(("127.0.0.1", gate.port), timeout=DEADLINE_S) as conn:
        conn.sendall(MAGIC)  # a few bytes, then nothing
        assert conn.recv(4096) == b""  # the gate closes it (handshake_timeout_s=1)
    assert gate.refused == 1 and "no handshake within" in gate.refusals[0].reason


def test_hello_then_silence_is_cut_and_reveals_no_proof(gate):
    with socket.create_connection(("127.0.0.1", gate.port), timeout=DEADLINE_S) as conn:
        conn.sendall(MAGIC + bytes([VERSION]) + os.urandom(32))
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
        assert len(data) == HELLO_BYTES  # the gate's nonce only, no MAC
    assert gate.refused == 1


def test_no_lighthouse_behind_the_gate_is_reported_not_refused(gate):
    lines: list[str] = []
    gate.clear_upstream()
    tunnel = AdmissionTunnel(SECRET, gate.address, log=lines.append)
    try:
        assert _closed_without_data(tunnel.port)
        assert gate.refused == 0 and gate.unavailable == 1 and tunnel.unavailable == 1
        assert "lighthouse is down" in lines[0]
    finally:
        tunnel.close()


def test_new_upstream_gets_a_newer_incarnation(gate):
    first = gate.incarnation
    echo = EchoServer()
    tunnel = AdmissionTunnel(SECRET, gate.address)
    try:
        assert gate.set_upstream("127.0.0.1", echo.port) > first
        assert _through(tunnel, b"ping") == b"ping"
        assert tunnel.incarnation == gate.incarnation
    finally:
        tunnel.close()
        echo.close()


def test_refusal_reports_are_rate_limited_but_counted(gate):
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", gate.port), timeout=DEADLINE_S) as conn:
            conn.sendall(b"x" * HELLO_BYTES)
            assert conn.recv(16) == b""
    assert gate.refused == 5 and gate.refused_by_peer == {"127.0.0.1": 5}
    assert len(gate.refusals) == 1  # one report per peer host per REPORT_EVERY_S


def test_split_address():
    assert split_address("http://10.0.0.1:29510") == ("10.0.0.1", 29510)
    assert split_address("127.0.0.1:1") == ("127.0.0.1", 1)
    assert split_address("[::1]:7") == ("::1", 7)
    with pytest.raises(ValueError):
        split_address("nohost")


# --------------------------------------------------- the supervised lighthouse
def _connect_and_wait_admitted(tunnel: AdmissionTunnel, incarnation: int) -> None:
    from tests.fleet_helpers import wait_for

    with socket.create_connection(("127.0.0.1", tunnel.port), timeout=DEADLINE_S):
        wait_for(lambda: tunnel.incarnation == incarnation, DEADLINE_S, "admission")


def test_gated_lighthouse_is_restarted_behind_the_same_gate(tmp_path):
    from phalanx.launch.coordinator import GatedLighthouse
    from phalanx.launch.lighthouse import LighthouseSettings

    seen: list[tuple[str, dict]] = []
    coordinator = GatedLighthouse(
        LighthouseSettings(),
        SECRET,
        tmp_path / "lighthouse.log",
        on_event=lambda kind, **fields: seen.append((kind, fields)),
    )
    tunnel = AdmissionTunnel(SECRET, coordinator.address)
    try:
        address, first = coordinator.address, coordinator.incarnation
        _connect_and_wait_admitted(tunnel, first)

        coordinator.kill(restart_after_s=0.0, step=7)  # an injected fault
        assert seen[-1] == (
            "lighthouse_down",
            {"cause": "injected", "restart_in_s": 0.0, "step": 7},
        )
        assert not coordinator.up and coordinator.gate.incarnation == first
        coordinator.poll()  # due at once: restarted
        assert coordinator.up and coordinator.address == address
        assert coordinator.incarnation > first and seen[-1][0] == "lighthouse_restart"
        _connect_and_wait_admitted(tunnel, coordinator.incarnation)

        second = coordinator.incarnation
        dead = coordinator._child._process
        dead.kill()  # a death nobody planned
        dead.wait()
        coordinator.poll()
        # A launcher lives for weeks: the dead child's pipes are closed, not leaked.
        assert all(pipe.closed for pipe in (dead.stdin, dead.stdout, dead.stderr))
        kinds = [kind for kind, _ in seen]
        assert kinds[-2:] == ["lighthouse_down", "lighthouse_restart"]
        assert seen[-2][1]["cause"] == "exited" and coordinator.incarnation > second
        assert coordinator.restarts == 2
    finally:
        tunnel.close()
        coordinator.shutdown()


def test_quorum_ids_carry_the_lighthouse_incarnation():
    from phalanx.runtime.torchft_access import QuorumRecorder as _QuorumRecorder

    class Result:
        quorum_id = 1
        replica_ids = ("r0:x", "r1:y")

    class Client:
        def _quorum(self, **_kwargs):
            return Result()

    incarnation = {"now": 1_000}
    recorder = _QuorumRecorder(Client(), lambda: incarnation["now"])
    before = recorder._quorum(step=3).quorum_id
    assert recorder.last.replica_ids == ("r0:x", "r1:y")  # everything else passes through
    assert before & 0xFFFF_FFFF == 1 and before >> 32 > 0
    assert recorder._quorum().quorum_id == before  # same lighthouse: same id, no reconfigure
    incarnation["now"] = 2_000  # a restarted lighthouse numbers its quorums from 1 again
    assert recorder._quorum().quorum_id not in (before, 1)
    assert _QuorumRecorder(Client())._quorum().quorum_id == 1  # no tunnel: torchft's own id


# ------------------------------------------------------------- fleet progress
def test_progress_record_keeps_the_highest_step_and_the_completion():
    record = ProgressRecord()
    assert record.update(ProgressReport(PURPOSE_PROGRESS, 7), now_s=10.0) == FleetProgress(7)
    assert record.update(ProgressReport(PURPOSE_PROGRESS, 3), now_s=11.0) == FleetProgress(7)
    done = ProgressReport(PURPOSE_PROGRESS, 30, complete=True, launcher_age_s=20.0)
    assert record.update(done, now_s=12.0) == FleetProgress(30, complete=True)
    # A replica of that run (its launcher started 30 s ago), back late: told the run is done.
    late = ProgressReport(PURPOSE_PROGRESS, 0, launcher_age_s=30.0)
    assert record.update(late, now_s=40.0) == FleetProgress(30, complete=True)
    assert record.runs == 1


def test_a_launcher_started_after_the_completion_starts_a_new_run():
    record = ProgressRecord()
    record.update(ProgressReport(PURPOSE_PROGRESS, 30, complete=True), now_s=100.0)
    fresh = ProgressReport(PURPOSE_PROGRESS, 0, launcher_age_s=5.0)  # launched at 195 > 100
    assert record.update(fresh, now_s=200.0) == FleetProgress(0, complete=False)
    assert record.runs == 2 and record.progress == FleetProgress(0)


def test_report_round_trips_and_clamps_negative_values():
    report = ProgressReport(PURPOSE_PROGRESS, 12, True, 3.25)
    assert ProgressReport.unpack(report.pack()) == report
    assert ProgressReport.unpack(ProgressReport(step=-1, launcher_age_s=-2).pack()).step == 0


def test_tunnel_exchanges_progress_with_the_gate_without_the_lighthouse(gate):
    gate.clear_upstream()  # progress needs no lighthouse
    finisher = AdmissionTunnel(SECRET, gate.address)
    late = AdmissionTunnel(SECRET, gate.address, launched_at_s=finisher.launched_at_s)
    try:
        assert late.exchange_progress(0, complete=False) == FleetProgress(0)
        assert finisher.exchange_progress(30, complete=True) == FleetProgress(30, True)
        assert late.exchange_progress(2, complete=False) == FleetProgress(30, True)
        assert gate.admitted == 0 and gate.refused == 0  # nothing reached a lighthouse
    finally:
        finisher.close()
        late.close()


def test_a_wrong_secret_cannot_declare_the_run_complete(gate):
    lines: list[str] = []
    rogue = AdmissionTunnel(WRONG, gate.address, log=lines.append)
    try:
        assert rogue.exchange_progress(30, complete=True) is None
        assert gate.progress.progress == FleetProgress(0) and gate.refused == 1
        assert "could not exchange progress" in lines[0]
    finally:
        rogue.close()


def test_a_rewind_lowers_the_fleets_step_but_not_a_finished_run():
    record = ProgressRecord()
    record.update(ProgressReport(PURPOSE_PROGRESS, 12), now_s=1.0)
    assert record.update(ProgressReport(PURPOSE_REWIND, 10), now_s=2.0) == FleetProgress(10)
    record.update(ProgressReport(PURPOSE_PROGRESS, 30, complete=True), now_s=3.0)
    late = ProgressReport(PURPOSE_REWIND, 5, launcher_age_s=4.0)  # a replica of that run
    assert record.update(late, now_s=4.0) == FleetProgress(30, True)


def test_step_reports_reach_the_gate_without_waiting(gate):
    tunnel = AdmissionTunnel(SECRET, gate.address)
    try:
        tunnel.report_step(7)
        deadline = time.monotonic() + DEADLINE_S
        while gate.progress.progress.step != 7 and time.monotonic() < deadline:
            time.sleep(0.01)  # polling the gate's record, with a deadline
        assert gate.progress.progress == FleetProgress(7)
        assert tunnel.exchange_progress(3, complete=False, rewind=True) == FleetProgress(3)
    finally:
        tunnel.close()
