"""Power-limit control of one device: directly when permitted, else through the root helper.

Setting a power limit needs privileges on both vendors (NVML: root or
CAP_SYS_ADMIN; amdsmi: root, as it writes the GPU's hwmon `power1_cap`), while
reading it does not. `open_power_limiter` tries one harmless write (the limit
in force, written back) so that a missing permission shows up before training
starts, not in the middle of it. Without the permission it goes through
`phalanx power-helper` (see power_helper.py) when given its socket, and
otherwise raises `PowerControlError` naming the permission and the fix: a
power budget that is silently not applied would be worse than none.

The helper speaks JSON lines over a Unix socket, one request per connection:
    {"op": "set", "kind": "nvidia", "index": 0, "limit_w": 200}
    {"op": "get" | "restore", "kind": "nvidia" | "amd", "index": 0}
and answers {"ok": true, "limit_w": ..., "min_w": ..., "max_w": ...} or
{"ok": false, "error": "..."}. `index` is the vendor library's own index
(nvidia-smi's, PCI order for NVML), not CUDA's.
"""

from __future__ import annotations

import json
import math
import socket
from types import ModuleType
from typing import Any, Protocol

from phalanx.devices.telemetry.amd import AmdSmiTelemetry
from phalanx.devices.telemetry.base import ChainTelemetry, Telemetry, TelemetryUnsupported
from phalanx.devices.telemetry.nvml import NvmlTelemetry
from phalanx.errors import UsageError

HELPER_FIX = (
    "run `sudo phalanx power-helper --socket PATH` once per host and pass "
    "`--power-helper PATH`, or drop --power-budget-w/--objective"
)
# Requests and replies are a few dozen bytes; the cap keeps a bad peer from
# making the other side buffer without bound.
MAX_LINE_BYTES = 4096
HELPER_TIMEOUT_S = 10.0
# Return codes of the vendor libraries (nvml.h, amdsmi.h), used when the
# Python binding does not export the constant.
_NVML_ERROR_NO_PERMISSION = 4
_AMDSMI_STATUS_NO_PERM = 10


class PowerControlError(UsageError):
    """A power limit cannot be read, set or restored on a device; the message says why and how to fix it.

    `reason` lets a caller tell the cases apart without parsing text:
    "unsupported" (the device has no power-limit control: choose devices
    instead), "permission", "helper" (the helper is unreachable or refused),
    "range", or "error".
    """

    def __init__(
        self, field: str, problem: str, fix: str, value: Any = None, *, reason: str = "error"
    ) -> None:
        self.reason = reason
        super().__init__(field, problem, fix, value)


class PowerLimiter(Protocol):
    """Power-limit control of one device, in watts."""

    device_id: str

    def range_w(self) -> tuple[float, float]:
        """The lowest and highest limit the device accepts."""
        ...

    def limit_w(self) -> float | None:
        """The limit in force now (None: the device has no cap set)."""
        ...

    def set_limit_w(self, watts: float) -> None: ...

    def restore(self) -> None:
        """Put back the limit in force before phalanx changed it."""
        ...


class PermissionDenied(Exception):
    """The vendor library refused a write for lack of privileges; str() says which."""


class BackendError(Exception):
    """Any other refusal of the vendor library."""


def _field(device_id: str) -> str:
    return f"power limit of {device_id}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def range_problem(watts: Any, low_w: float, high_w: float) -> str | None:
    """Why `watts` is not an acceptable limit in [low_w, high_w], or None if it is."""
    if not _is_number(watts):
        return f"limit_w must be a number of watts, not {type(watts).__name__}"
    if not math.isfinite(watts):
        return "limit_w must be a finite number of watts"
    if not low_w <= watts <= high_w:
        return f"{watts:g} W is outside the range this device accepts, [{low_w:g}, {high_w:g}] W"
    return None


def _check_range(device_id: str, watts: float, range_w: tuple[float, float]) -> None:
    low_w, high_w = range_w
    problem = range_problem(watts, low_w, high_w)
    if problem is not None:
        raise PowerControlError(
            _field(device_id),
            problem,
            f"choose a limit between {low_w:g} and {high_w:g} W",
            reason="range",
        )


class PowerBackend(Protocol):
    """One vendor library's power-limit calls for one device (shared by client and helper)."""

    kind: str
    library: str
    permission_problem: str

    def index(self) -> int: ...

    def range_w(self) -> tuple[float, float]: ...

    def limit_w(self) -> float: ...

    def write_limit_w(self, watts: float) -> None:
        """Write without range checks; raises PermissionDenied or BackendError."""
        ...


class NvmlBackend:
    kind = "nvidia"
    library = "NVML"
    permission_problem = (
        "NVML returned NO_PERMISSION: setting a power limit needs root or CAP_SYS_ADMIN"
    )

    def __init__(self, nvml: ModuleType, handle: Any) -> None:
        self.nvml = nvml
        self.handle = handle

    @staticmethod
    def count(nvml: ModuleType) -> int:
        return int(nvml.nvmlDeviceGetCount())

    @classmethod
    def open(cls, nvml: ModuleType, index: int) -> NvmlBackend:
        return cls(nvml, nvml.nvmlDeviceGetHandleByIndex(index))

    def index(self) -> int:
        return int(self.nvml.nvmlDeviceGetIndex(self.handle))

    def range_w(self) -> tuple[float, float]:
        low_mw, high_mw = self.nvml.nvmlDeviceGetPowerManagementLimitConstraints(self.handle)
        return low_mw / 1000.0, high_mw / 1000.0

    def limit_w(self) -> float:
        return float(self.nvml.nvmlDeviceGetPowerManagementLimit(self.handle)) / 1000.0

    def write_limit_w(self, watts: float) -> None:
        try:
            self.nvml.nvmlDeviceSetPowerManagementLimit(self.handle, round(watts * 1000))
        except Exception as err:
            no_perm = getattr(self.nvml, "NVML_ERROR_NO_PERMISSION", _NVML_ERROR_NO_PERMISSION)
            if isinstance(err, PermissionError) or getattr(err, "value", None) == no_perm:
                raise PermissionDenied(self.permission_problem) from err
            raise BackendError(f"NVML: {err}") from err


def _same_handle(a: Any, b: Any) -> bool:
    # amdsmi handles are ctypes pointers: a fresh object per call, equal only by value.
    return bool(getattr(a, "value", a) == getattr(b, "value", b))


class AmdBackend:
    kind = "amd"
    library = "amdsmi"
    permission_problem = (
        "amdsmi returned NO_PERM: setting a power cap needs root "
        "(amdsmi writes the GPU's hwmon power1_cap file)"
    )

    def __init__(self, smi: ModuleType, handle: Any) -> None:
        self.smi = smi
        self.handle = handle

    @staticmethod
    def count(smi: ModuleType) -> int:
        return len(smi.amdsmi_get_processor_handles())

    @classmethod
    def open(cls, smi: ModuleType, index: int) -> AmdBackend:
        if not hasattr(smi, "amdsmi_set_power_cap"):
            raise BackendError("amdsmi: this amdsmi has no amdsmi_set_power_cap")
        return cls(smi, smi.amdsmi_get_processor_handles()[index])

    def index(self) -> int:
        handles = self.smi.amdsmi_get_processor_handles()
        for i, handle in enumerate(handles):
            if _same_handle(handle, self.handle):
                return i
        raise BackendError("amdsmi: the device is not among amdsmi's processors")

    def _cap_info_uw(self, key: str) -> float:
        value = self.smi.amdsmi_get_power_cap_info(self.handle).get(key)
        if not _is_number(value):
            # Older amdsmi releases report no min/max: without the range no write is safe.
            raise BackendError(f"amdsmi: power cap info has no {key}")
        return float(value)

    def range_w(self) -> tuple[float, float]:
        return self._cap_info_uw("min_power_cap") / 1e6, self._cap_info_uw("max_power_cap") / 1e6

    def limit_w(self) -> float:
        return self._cap_info_uw("power_cap") / 1e6

    def write_limit_w(self, watts: float) -> None:
        try:
            self.smi.amdsmi_set_power_cap(self.handle, 0, round(watts * 1e6))  # sensor 0, µW
        except Exception as err:
            wrapper = getattr(self.smi, "amdsmi_wrapper", None)
            no_perm = getattr(wrapper, "AMDSMI_STATUS_NO_PERM", _AMDSMI_STATUS_NO_PERM)
            if isinstance(err, PermissionError) or getattr(err, "err_code", None) == no_perm:
                raise PermissionDenied(self.permission_problem) from err
            raise BackendError(f"amdsmi: {err}") from err


# The helper opens devices by kind and index; the kinds are also its whitelist.
BACKENDS: dict[str, type[NvmlBackend] | type[AmdBackend]] = {
    "nvidia": NvmlBackend,
    "amd": AmdBackend,
}


class DirectLimiter:
    """Calls the vendor library in this process (it has the privileges)."""

    def __init__(self, device_id: str, backend: PowerBackend) -> None:
        self.device_id = device_id
        self.backend = backend
        self._original_w = backend.limit_w()

    def range_w(self) -> tuple[float, float]:
        return self.backend.range_w()

    def limit_w(self) -> float | None:
        return self.backend.limit_w()

    def set_limit_w(self, watts: float) -> None:
        _check_range(self.device_id, watts, self.range_w())
        self._write(watts)

    def restore(self) -> None:
        # No range check: this limit was in force when we opened the device.
        self._write(self._original_w)

    def _write(self, watts: float) -> None:
        try:
            self.backend.write_limit_w(watts)
        except PermissionDenied as err:
            raise PowerControlError(
                _field(self.device_id), str(err), HELPER_FIX, reason="permission"
            ) from err
        except BackendError as err:
            raise PowerControlError(
                _field(self.device_id),
                f"cannot set {watts:g} W: {err}",
                "check the device with nvidia-smi / amd-smi, or drop --power-budget-w/--objective",
            ) from err


class HelperLimiter:
    """Asks `phalanx power-helper` over its Unix socket to change the limit.

    restore() asks the helper to put back the limit it found before its first
    change to the device: the limit found at open in a normal run, and still
    the right one after a worker that had lowered it crashed and was restarted.
    """

    def __init__(self, device_id: str, socket_path: str, kind: str, index: int) -> None:
        self.device_id = device_id
        self.socket_path = socket_path
        self.kind = kind
        self.index = index
        first = self._ask("get")
        self._range_w = (float(first["min_w"]), float(first["max_w"]))

    def range_w(self) -> tuple[float, float]:
        return self._range_w

    def limit_w(self) -> float | None:
        return float(self._ask("get")["limit_w"])

    def set_limit_w(self, watts: float) -> None:
        # Checked here for a clear message; the helper checks again, as it trusts no client.
        _check_range(self.device_id, watts, self._range_w)
        self._ask("set", limit_w=watts)

    def restore(self) -> None:
        self._ask("restore")

    def _ask(self, op: str, **fields: Any) -> dict[str, Any]:
        request = {"op": op, "kind": self.kind, "index": self.index, **fields}
        try:
            reply = helper_request(self.socket_path, request)
        except (OSError, ValueError) as err:
            raise PowerControlError(
                _field(self.device_id),
                f"the power helper at {self.socket_path} cannot be reached ({err})",
                "start it with `sudo phalanx power-helper --socket PATH --group GROUP` and make "
                "this user a member of GROUP (connecting needs write access to the socket), "
                "or drop --power-budget-w/--objective",
                reason="helper",
            ) from err
        if not reply["ok"]:
            raise PowerControlError(
                _field(self.device_id),
                f"the power helper refused {op}: {reply.get('error')}",
                "see the helper's log; " + HELPER_FIX,
                reason="helper",
            )
        if not all(_is_number(reply.get(k)) for k in ("limit_w", "min_w", "max_w")):
            raise PowerControlError(
                _field(self.device_id),
                f"the power helper at {self.socket_path} sent a reply without limits",
                "run the same phalanx version for the helper and the training",
                str(reply)[:200],
                reason="helper",
            )
        return reply


class TelemetryLimiter:
    """Devices whose telemetry sets limits itself, without privileges (emulated chips)."""

    def __init__(self, device_id: str, telemetry: Telemetry) -> None:
        self.device_id = device_id
        self.telemetry = telemetry
        self._original_w = telemetry.power_limit_w()

    def range_w(self) -> tuple[float, float]:
        low_w, high_w = self.telemetry.power_limit_range_w()  # type: ignore[attr-defined]
        return float(low_w), float(high_w)

    def limit_w(self) -> float | None:
        return self.telemetry.power_limit_w()

    def set_limit_w(self, watts: float) -> None:
        _check_range(self.device_id, watts, self.range_w())
        try:
            self.telemetry.set_power_limit_w(watts)
        except TelemetryUnsupported as err:
            raise PowerControlError(
                _field(self.device_id), str(err), "drop --power-budget-w/--objective"
            ) from err

    def restore(self) -> None:
        # "No cap" cannot be written back through Telemetry; the top of the
        # range caps nothing the device can draw, so it is the same thing.
        self.set_limit_w(self.range_w()[1] if self._original_w is None else self._original_w)


def helper_request(
    socket_path: str, request: dict[str, Any], timeout_s: float = HELPER_TIMEOUT_S
) -> dict[str, Any]:
    """Send one request to the helper and return its reply (raises OSError, ValueError)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        # A backstop against a wedged helper, not a synchronisation.
        sock.settimeout(timeout_s)
        sock.connect(socket_path)
        sock.sendall(json.dumps(request, allow_nan=False).encode() + b"\n")
        line = _read_line(sock)
    reply = json.loads(line)
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise ValueError(f"not a power-helper reply: {line[:200]!r}")
    return reply


def _read_line(sock: socket.socket) -> bytes:
    buf = bytearray()
    while not buf.endswith(b"\n"):
        chunk = sock.recv(MAX_LINE_BYTES)
        if not chunk:
            raise ValueError("the power helper closed the connection without a reply")
        buf += chunk
        if len(buf) > MAX_LINE_BYTES:
            raise ValueError("the power helper's reply is too long")
    return bytes(buf)


def _parts(telemetry: Telemetry) -> list[Telemetry]:
    if isinstance(telemetry, ChainTelemetry):
        return [p for part in telemetry.parts for p in _parts(part)]
    return [telemetry]


def _vendor_backend(telemetry: Telemetry) -> PowerBackend | None:
    for part in _parts(telemetry):
        if isinstance(part, NvmlTelemetry):
            return NvmlBackend(part.nvml, part.handle)
        if isinstance(part, AmdSmiTelemetry) and part.can_set_power_limit():
            return AmdBackend(part.smi, part.handle)
    return None


def _self_limiting(telemetry: Telemetry) -> Telemetry | None:
    for part in _parts(telemetry):
        settable = False
        try:
            settable = part.can_set_power_limit() and hasattr(part, "power_limit_range_w")
        except Exception:  # a probe that errors means no control, as in capabilities()
            settable = False
        if settable:
            return part
    return None


def _unsupported(device_id: str, why: str) -> PowerControlError:
    return PowerControlError(
        _field(device_id),
        f"the device has no power-limit control ({why})",
        "meet a power budget by choosing which devices train, or drop --power-budget-w/--objective",
        reason="unsupported",
    )


def open_power_limiter(
    telemetry: Telemetry, device_id: str, helper_socket: str | None = None
) -> PowerLimiter:
    """Power-limit control of the device behind `telemetry`.

    Raises PowerControlError when the device has no control (reason
    "unsupported"), when this process lacks the permission and no helper is
    given ("permission"), or when the given helper cannot be used ("helper").
    """
    backend = _vendor_backend(telemetry)
    if backend is None:
        part = _self_limiting(telemetry)
        if part is not None:
            return TelemetryLimiter(device_id, part)
        raise _unsupported(device_id, f"telemetry source {telemetry.source!r}")
    try:
        backend.range_w()
        current_w = backend.limit_w()
    except Exception as err:
        raise _unsupported(device_id, f"{backend.library} cannot read its limits: {err}") from err
    try:
        # Writing back the limit in force changes nothing and tells whether we may write.
        backend.write_limit_w(current_w)
    except PermissionDenied as err:
        if helper_socket is None:
            raise PowerControlError(
                _field(device_id), str(err), HELPER_FIX, reason="permission"
            ) from err
        try:
            index = backend.index()
        except Exception as index_err:
            raise _unsupported(
                device_id, f"{backend.library}: no device index: {index_err}"
            ) from err
        return HelperLimiter(device_id, helper_socket, backend.kind, index)
    except BackendError as err:
        raise _unsupported(device_id, str(err)) from err
    return DirectLimiter(device_id, backend)
