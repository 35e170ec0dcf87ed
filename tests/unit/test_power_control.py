"""Power-limit control: direct, through the privileged helper, or a clear error (mocked NVML/amdsmi)."""

from __future__ import annotations

import grp
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from phalanx.devices.telemetry import ChainTelemetry, NullTelemetry, Telemetry
from phalanx.devices.telemetry.amd import AmdSmiTelemetry, reset_amdsmi_cache
from phalanx.devices.telemetry.nvml import NvmlTelemetry, reset_nvml_cache
from phalanx.energy.power_control import (
    DirectLimiter,
    HelperLimiter,
    PowerControlError,
    TelemetryLimiter,
    helper_request,
    open_power_limiter,
)
from phalanx.energy.power_helper import (
    MAX_LINE_BYTES,
    PowerHelper,
    PowerHelperServer,
    check_socket_path,
    parse_request,
)
from phalanx.errors import UsageError

from .devices_fake_nvml import FakeGpu, make_pynvml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gpu(monkeypatch) -> Iterator[FakeGpu]:
    """One GPU at 700 W of [200, 700] W, seen by this (unprivileged) process through NVML."""
    g = FakeGpu(permission=False)
    monkeypatch.setitem(sys.modules, "pynvml", make_pynvml(g))
    reset_nvml_cache()
    yield g
    reset_nvml_cache()


def nvml_telemetry() -> Telemetry:
    # As the factory builds it for a CUDA device: NVML first, in a chain.
    nvml = NvmlTelemetry.open(0)
    assert nvml is not None
    return ChainTelemetry(nvml, NullTelemetry())


@pytest.fixture
def sock_path() -> Iterator[str]:
    # AF_UNIX paths are limited to ~107 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="phx-") as d:
        yield os.path.join(d, "power.sock")


class RunningHelper:
    def __init__(self, path: str, libraries: dict[str, types.ModuleType]) -> None:
        self.log: list[str] = []
        self.helper = PowerHelper(libraries, log=self.log.append)
        self.server = PowerHelperServer(path, self.helper)
        self.path = path
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self) -> list[str]:
        self.server.shutdown()
        self.thread.join()
        self.server.server_close()
        return self.helper.close()


@pytest.fixture
def helper(gpu: FakeGpu, sock_path: str) -> Iterator[RunningHelper]:
    """A helper in a thread, with its own NVML that has root's permission over the same GPU."""
    running = RunningHelper(sock_path, {"nvidia": make_pynvml(gpu, permission=True)})
    yield running
    running.stop()


def raw(path: str, *lines: bytes) -> list[dict]:
    """Send raw request lines over one connection; the replies, one per line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(path)
        s.sendall(b"".join(lines))
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


# --- direct control ---------------------------------------------------------


def test_direct_set_works_and_restore_puts_back_the_original(gpu):
    gpu.permission = True
    limiter = open_power_limiter(nvml_telemetry(), "cuda0")
    assert isinstance(limiter, DirectLimiter) and limiter.device_id == "cuda0"
    assert limiter.range_w() == (200.0, 700.0)
    limiter.set_limit_w(450)
    assert gpu.limit_mw == 450_000 and limiter.limit_w() == 450.0
    limiter.set_limit_w(312.5)
    assert gpu.limit_mw == 312_500
    limiter.restore()
    assert gpu.limit_mw == 700_000


def test_no_permission_without_helper_names_the_permission_and_the_fix(gpu):
    with pytest.raises(PowerControlError) as info:
        open_power_limiter(nvml_telemetry(), "cuda0")
    err = info.value
    message = err.message()
    assert err.reason == "permission" and isinstance(err, UsageError)
    assert "cuda0" in message
    assert (
        "NVML returned NO_PERMISSION: setting a power limit needs root or CAP_SYS_ADMIN" in message
    )
    assert "sudo phalanx power-helper --socket PATH" in message and "--power-helper PATH" in message
    assert "--power-budget-w" in message and "\n" not in message
    assert gpu.limit_mw == 700_000  # the probe wrote back what was there, if anything


def test_out_of_range_is_refused_by_the_direct_limiter(gpu):
    gpu.permission = True
    limiter = open_power_limiter(nvml_telemetry(), "cuda0")
    for bad in (900, 150, float("nan"), float("inf")):
        with pytest.raises(PowerControlError) as info:
            limiter.set_limit_w(bad)
        assert info.value.reason == "range" and "cuda0" in info.value.message()
    with pytest.raises(PowerControlError, match=r"\[200, 700\] W"):
        limiter.set_limit_w(900)
    assert gpu.limit_mw == 700_000


def test_devices_without_power_limit_control_say_so(gpu):
    for telemetry in (NullTelemetry(), ChainTelemetry(NullTelemetry())):
        with pytest.raises(PowerControlError, match="no power-limit control") as info:
            open_power_limiter(telemetry, "cpu0")
        assert info.value.reason == "unsupported"

    def not_supported(handle):
        raise sys.modules["pynvml"].NVMLError(3)

    sys.modules["pynvml"].nvmlDeviceGetPowerManagementLimitConstraints = not_supported
    with pytest.raises(PowerControlError, match=r"no power-limit control.*Not Supported") as info:
        open_power_limiter(nvml_telemetry(), "cuda0", helper_socket="/unused")
    assert info.value.reason == "unsupported"


class _SelfLimiting(Telemetry):
    """Like an emulated chip: sets its own limit, no privileges involved, no cap at first."""

    source = "emulated"

    def __init__(self) -> None:
        self.limit: float | None = None

    def power_limit_w(self):
        return self.limit

    def power_limit_range_w(self):
        return (60.0, 300.0)

    def can_set_power_limit(self):
        return True

    def set_power_limit_w(self, watts):
        self.limit = watts


def test_telemetry_that_sets_its_own_limit_needs_no_helper():
    chip = _SelfLimiting()
    limiter = open_power_limiter(chip, "emu0")
    assert isinstance(limiter, TelemetryLimiter)
    limiter.set_limit_w(120)
    assert limiter.limit_w() == 120.0
    with pytest.raises(PowerControlError, match="range"):
        limiter.set_limit_w(301)
    limiter.restore()  # no cap before: the top of the range caps nothing
    assert chip.limit == 300.0


# --- through the helper -----------------------------------------------------


def test_no_permission_with_a_helper_sets_the_limit_through_it(gpu, helper):
    limiter = open_power_limiter(nvml_telemetry(), "cuda0", helper_socket=helper.path)
    assert isinstance(limiter, HelperLimiter)
    assert limiter.range_w() == (200.0, 700.0) and limiter.limit_w() == 700.0
    limiter.set_limit_w(300)
    assert gpu.limit_mw == 300_000 and limiter.limit_w() == 300.0
    assert any("nvidia:0 limit 700 W -> 300 W" in line for line in helper.log)
    limiter.restore()
    assert gpu.limit_mw == 700_000 and helper.helper.changed() == {}


def test_helper_restore_survives_a_crashed_client(gpu, helper):
    # A worker lowers the limit and dies; its restart opens the device at the lowered limit.
    open_power_limiter(nvml_telemetry(), "cuda0", helper_socket=helper.path).set_limit_w(250)
    restarted = open_power_limiter(nvml_telemetry(), "cuda0", helper_socket=helper.path)
    restarted.restore()
    assert gpu.limit_mw == 700_000  # what the helper found, not what the restart found


def test_out_of_range_is_refused_by_the_helper_limiter_and_by_the_helper(gpu, helper):
    limiter = open_power_limiter(nvml_telemetry(), "cuda0", helper_socket=helper.path)
    with pytest.raises(PowerControlError, match=r"\[200, 700\] W") as info:
        limiter.set_limit_w(750)
    assert info.value.reason == "range"
    # A client that skips its own check meets the helper's.
    for limit_w in (750, 199.9, -1):
        reply = helper_request(
            helper.path, {"op": "set", "kind": "nvidia", "index": 0, "limit_w": limit_w}
        )
        assert reply["ok"] is False and "[200, 700] W" in reply["error"]
    assert gpu.limit_mw == 700_000 and helper.helper.changed() == {}


def test_a_helper_that_cannot_be_reached_is_a_clear_error(gpu, sock_path):
    with pytest.raises(PowerControlError) as info:
        open_power_limiter(nvml_telemetry(), "cuda0", helper_socket=sock_path)
    message = info.value.message()
    assert info.value.reason == "helper" and sock_path in message and "--group" in message


MALFORMED = [
    b"not json\n",
    b"\xff\xfe\n",
    b"[]\n",
    b'"get"\n',
    b'{"op": "exec", "kind": "nvidia", "index": 0}\n',
    b'{"op": ["get"], "kind": "nvidia", "index": 0}\n',
    b'{"kind": "nvidia", "index": 0}\n',
    b'{"op": "set", "kind": "nvidia", "index": 0}\n',
    b'{"op": "get", "kind": "nvidia", "index": 0, "cmd": "reboot"}\n',
    b'{"op": "get", "kind": "nvidia", "index": 0, "limit_w": 300}\n',
    b'{"op": "get", "kind": "nvidia", "index": "0"}\n',
    b'{"op": "get", "kind": "nvidia", "index": true}\n',
    b'{"op": "get", "kind": "nvidia", "index": 0.0}\n',
    b'{"op": "get", "kind": "nvidia", "index": 1}\n',
    b'{"op": "get", "kind": "nvidia", "index": -1}\n',
    b'{"op": "get", "kind": "amd", "index": 0}\n',
    b'{"op": "get", "kind": "intel", "index": 0}\n',
    b'{"op": "get", "kind": 0, "index": 0}\n',
    b'{"op": "set", "kind": "nvidia", "index": 0, "limit_w": "300"}\n',
    b'{"op": "set", "kind": "nvidia", "index": 0, "limit_w": true}\n',
    b'{"op": "set", "kind": "nvidia", "index": 0, "limit_w": NaN}\n',
    b'{"op": "set", "kind": "nvidia", "index": 0, "limit_w": Infinity}\n',
    b'{"op": "set", "kind": "nvidia", "index": 0, "limit_w": 1e400}\n',
    b'{"op": "set", "kind": "nvidia", "index": 0, "limit_w": 300, "limit_w": 250}\n',
    b"\n",
]


def test_malformed_requests_are_rejected_and_the_helper_keeps_serving(gpu, helper):
    good = b'{"op": "get", "kind": "nvidia", "index": 0}\n'
    replies = raw(helper.path, *MALFORMED, good)
    assert len(replies) == len(MALFORMED) + 1
    for line, reply in zip(MALFORMED, replies):
        assert reply["ok"] is False and reply["error"], line
        assert set(reply) == {"ok", "error"}
    assert replies[-1] == {
        "ok": True,
        "kind": "nvidia",
        "index": 0,
        "limit_w": 700.0,
        "min_w": 200.0,
        "max_w": 700.0,
    }
    # An over-long line is answered, then the connection is closed; the helper serves on.
    (too_long,) = raw(helper.path, b"x" * (MAX_LINE_BYTES + 10) + b"\n" + good)
    assert too_long["ok"] is False and "longer" in too_long["error"]
    assert raw(helper.path, good)[0]["ok"] is True
    assert gpu.limit_mw == 700_000 and helper.helper.changed() == {}


def test_parse_request_accepts_only_the_three_operations():
    ok = parse_request(b'{"op": "set", "kind": "amd", "index": 2, "limit_w": 300.5}')
    assert ok == {"op": "set", "kind": "amd", "index": 2, "limit_w": 300.5}
    assert parse_request(b'{"op": "restore", "kind": "nvidia", "index": 0}')["op"] == "restore"


def test_helper_restores_every_changed_limit_at_shutdown(gpu, sock_path):
    running = RunningHelper(sock_path, {"nvidia": make_pynvml(gpu, permission=True)})
    set_250 = {"op": "set", "kind": "nvidia", "index": 0, "limit_w": 250}
    assert helper_request(sock_path, set_250)["limit_w"] == 250.0
    assert helper_request(sock_path, {**set_250, "limit_w": 400})["limit_w"] == 400.0
    assert running.helper.changed() == {("nvidia", 0): 700.0}  # the first original is kept
    assert running.stop() == []
    assert gpu.limit_mw == 700_000
    assert not os.path.exists(sock_path)  # the helper removes its own socket
    refused = running.helper.handle_line(json.dumps(set_250).encode())
    assert json.loads(refused) == {"ok": False, "error": "the helper is shutting down"}


def test_the_restore_operation(gpu, helper):
    req = {"op": "restore", "kind": "nvidia", "index": 0}
    assert helper_request(helper.path, req)["limit_w"] == 700.0  # nothing changed: no-op
    helper_request(helper.path, {**req, "op": "set", "limit_w": 333})
    assert helper_request(helper.path, req)["limit_w"] == 700.0
    assert gpu.limit_mw == 700_000 and helper.helper.changed() == {}


def test_a_helper_without_root_answers_with_the_permission_it_lacks(gpu, sock_path):
    running = RunningHelper(sock_path, {"nvidia": make_pynvml(gpu, permission=False)})
    try:
        reply = helper_request(
            sock_path, {"op": "set", "kind": "nvidia", "index": 0, "limit_w": 300}
        )
        assert reply["ok"] is False and "NO_PERMISSION" in reply["error"]
        assert "run the helper as root" in reply["error"]
    finally:
        assert running.stop() == []
    assert gpu.limit_mw == 700_000


def test_socket_mode_and_group(gpu, sock_path):
    group = grp.getgrgid(os.getgid()).gr_name
    server = PowerHelperServer(
        sock_path, PowerHelper({"nvidia": make_pynvml(gpu)}), mode=0o660, group=group
    )
    try:
        st = os.stat(sock_path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_gid == os.getgid()
    finally:
        server.server_close()
    with pytest.raises(UsageError, match="no such group"):
        PowerHelperServer(sock_path, PowerHelper({}), group="no-such-group-phalanx")


def test_socket_path_checks(sock_path):
    Path(sock_path).write_text("precious")
    with pytest.raises(UsageError, match="not a socket"):
        check_socket_path(sock_path)
    assert Path(sock_path).read_text() == "precious"  # never removed
    os.unlink(sock_path)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sock_path)
    stale.close()  # a helper killed with SIGKILL leaves its socket file behind
    check_socket_path(sock_path)
    assert not os.path.exists(sock_path)
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(sock_path)
    live.listen(1)
    try:
        with pytest.raises(UsageError, match="already listening"):
            check_socket_path(sock_path)
    finally:
        live.close()
    with pytest.raises(UsageError, match="does not exist"):
        check_socket_path("/nonexistent-dir/x.sock")


_HELPER_PROCESS = """
import sys
from tests.unit.devices_fake_nvml import FakeGpu, make_pynvml
from phalanx.energy.power_helper import run_helper

gpu = FakeGpu(permission=True)
failures = run_helper(sys.argv[1], libraries={"nvidia": make_pynvml(gpu)})
print(f"limit_mw={gpu.limit_mw} failures={len(failures)}", flush=True)
"""


def test_helper_process_restores_limits_on_sigterm(sock_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", _HELPER_PROCESS, sock_path],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        # The helper logs "serving ..." once its socket listens.
        for line in proc.stderr:
            if "serving nvidia on" in line:
                break
        else:
            pytest.fail(f"the helper exited: {proc.wait()}")
        req = {"op": "set", "kind": "nvidia", "index": 0, "limit_w": 333}
        assert helper_request(sock_path, req)["limit_w"] == 333.0
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "limit_mw=700000 failures=0" in out
    assert "restored to 700 W at exit" in err and "Traceback" not in err
    assert not os.path.exists(sock_path)


def test_power_helper_cli_with_a_bad_socket_dir_is_one_line_and_exit_2():
    cmd = [sys.executable, "-c", "from phalanx.cli import main; main()", "power-helper"]
    cmd += ["--socket", "/nonexistent-dir/x.sock"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--socket" in lines[0] and "/nonexistent-dir" in lines[0]


# --- AMD (amdsmi) -----------------------------------------------------------


class FakeAmdSmiError(Exception):
    def __init__(self, err_code: int) -> None:
        super().__init__(err_code)
        self.err_code = err_code


def make_amdsmi(state: dict, permission: bool, with_range: bool = True) -> types.ModuleType:
    """A fake amdsmi over one MI300X-like GPU: cap 750 W of [100, 750] W, in microwatts."""
    smi = types.ModuleType("amdsmi")
    smi.amdsmi_init = lambda: None
    # ctypes handles: a fresh object per call, equal by value only.
    smi.amdsmi_get_processor_handles = lambda: [types.SimpleNamespace(value=0xA0)]

    def cap_info(handle):
        info = {"power_cap": state["cap_uw"], "default_power_cap": 750_000_000, "dpm_cap": 0}
        if with_range:
            info |= {"min_power_cap": 100_000_000, "max_power_cap": 750_000_000}
        return info

    def set_cap(handle, sensor, cap_uw):
        if not permission:
            raise FakeAmdSmiError(10)  # AMDSMI_STATUS_NO_PERM
        assert sensor == 0 and isinstance(cap_uw, int)
        state["cap_uw"] = cap_uw

    smi.amdsmi_get_power_cap_info = cap_info
    smi.amdsmi_set_power_cap = set_cap
    return smi


@pytest.fixture
def amd_state(monkeypatch) -> Iterator[dict]:
    state = {"cap_uw": 750_000_000}
    monkeypatch.setitem(sys.modules, "amdsmi", make_amdsmi(state, permission=False))
    reset_amdsmi_cache()
    yield state
    reset_amdsmi_cache()


def amd_telemetry() -> Telemetry:
    amd = AmdSmiTelemetry.open(0)
    assert amd is not None
    return ChainTelemetry(amd, NullTelemetry())


def test_amdsmi_direct_set_and_restore(amd_state, monkeypatch):
    monkeypatch.setitem(sys.modules, "amdsmi", make_amdsmi(amd_state, permission=True))
    reset_amdsmi_cache()
    limiter = open_power_limiter(amd_telemetry(), "rocm0")
    assert isinstance(limiter, DirectLimiter) and limiter.range_w() == (100.0, 750.0)
    limiter.set_limit_w(400.5)
    assert amd_state["cap_uw"] == 400_500_000 and limiter.limit_w() == 400.5
    with pytest.raises(PowerControlError, match=r"\[100, 750\] W"):
        limiter.set_limit_w(800)
    limiter.restore()
    assert amd_state["cap_uw"] == 750_000_000


def test_amdsmi_no_permission_without_and_with_the_helper(amd_state, sock_path):
    with pytest.raises(PowerControlError) as info:
        open_power_limiter(amd_telemetry(), "rocm0")
    message = info.value.message()
    assert "rocm0" in message and "amdsmi returned NO_PERM" in message and "root" in message
    assert "sudo phalanx power-helper" in message
    running = RunningHelper(sock_path, {"amd": make_amdsmi(amd_state, permission=True)})
    try:
        limiter = open_power_limiter(amd_telemetry(), "rocm0", helper_socket=sock_path)
        assert isinstance(limiter, HelperLimiter) and (limiter.kind, limiter.index) == ("amd", 0)
        limiter.set_limit_w(300)
        assert amd_state["cap_uw"] == 300_000_000
    finally:
        assert running.stop() == []
    assert amd_state["cap_uw"] == 750_000_000


def test_amdsmi_without_a_cap_range_or_setter_has_no_control(amd_state, monkeypatch):
    monkeypatch.setitem(
        sys.modules, "amdsmi", make_amdsmi(amd_state, permission=True, with_range=False)
    )
    reset_amdsmi_cache()
    with pytest.raises(PowerControlError, match="no power-limit control") as info:
        open_power_limiter(amd_telemetry(), "rocm0")
    assert info.value.reason == "unsupported"
    del sys.modules["amdsmi"].amdsmi_set_power_cap
    with pytest.raises(PowerControlError, match="no power-limit control"):
        open_power_limiter(amd_telemetry(), "rocm0")
