"""Read and write fleet.toml / qualified.toml, and admit qualified devices.

`load_admitted` is the runtime's entry point: it returns the devices that
passed qualification (with their measured speed and profile) and the ones
that did not, with reasons to show at start.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phalanx.devices.config import DeviceConfig, Qualification
from phalanx.devices.fleet_parse import Fleet, parse_fleet
from phalanx.devices.toml_write import dumps
from phalanx.errors import UsageError
from phalanx.plan.loading import check_integer_range
from phalanx.toml_compat import tomllib


@dataclass(frozen=True)
class Rejected:
    device: DeviceConfig
    reasons: tuple[str, ...]


def load_fleet(path: str | Path) -> Fleet:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UsageError(
            "--fleet",
            f"{path.name} is not UTF-8 text (byte {err.start} is {err.object[err.start]:#04x})",
            "save the fleet file as UTF-8 (TOML files must be UTF-8)",
            str(path),
        ) from None
    except OSError as err:
        raise UsageError(
            "--fleet",
            f"cannot read {path}: {err.strerror}",
            "pass the path of an existing fleet.toml",
            str(path),
        ) from None
    try:
        doc = tomllib.loads(text)
        check_integer_range(doc, path.name)
    except RecursionError:
        raise UsageError(
            str(path), "nests arrays or tables too deeply", "flatten the fleet file"
        ) from None
    except ValueError as err:  # TOMLDecodeError, or an integer of over 4300 digits
        raise UsageError(
            str(path), f"is not valid TOML: {err}", "fix the syntax at that line"
        ) from None
    return parse_fleet(doc, source=str(path))


def load_admitted(
    path: str | Path, *, require_qualification: bool = True
) -> tuple[list[DeviceConfig], list[Rejected]]:
    """Devices of a qualified fleet file that may train, and those that may not.

    A device without a `[device.qualification]` table is rejected ("not
    qualified") unless `require_qualification` is False.
    """
    admitted: list[DeviceConfig] = []
    rejected: list[Rejected] = []
    for device in load_fleet(path).devices:
        q = device.qualification
        if q is None:
            if require_qualification:
                rejected.append(
                    Rejected(device, ("not qualified: run `phalanx qualify` on this fleet",))
                )
            else:
                admitted.append(device)
        elif q.passed:
            admitted.append(device)
        else:
            rejected.append(Rejected(device, q.reasons or ("failed qualification",)))
    return admitted, rejected


def _drop_defaults(obj: Any) -> dict[str, Any]:
    """A dataclass as a dict, without fields still at their default value."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        default = f.default if f.default is not dataclasses.MISSING else None
        if value is None or (value == default and f.name not in ("passed", "level")):
            continue
        if dataclasses.is_dataclass(value):
            value = _drop_defaults(value) or None
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            value = [dataclasses.asdict(v) for v in value]
        elif isinstance(value, tuple):
            value = list(value)
        if value is not None:
            out[f.name] = value
    return out


def qualification_to_dict(q: Qualification) -> dict[str, Any]:
    out = {f.name: getattr(q, f.name) for f in dataclasses.fields(q)}
    # reasons/failed_checks stay even when empty: "passed with no reasons" reads clearer
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items() if v is not None}


def device_to_dict(device: DeviceConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"id": device.id, "kind": device.kind, "index": device.index}
    if device.model:
        out["model"] = device.model
    for key in ("host", "memory_bytes"):
        if getattr(device, key) is not None:
            out[key] = getattr(device, key)
    if device.dtypes:
        out["dtypes"] = list(device.dtypes)
    if device.emulated:
        out["speed"] = device.speed
        if device.seed is not None:
            out["seed"] = device.seed
        for key in ("power", "thermal"):
            value = getattr(device, key)
            if value is not None:
                out[key] = dataclasses.asdict(value)
        defects = _drop_defaults(device.defects)
        if defects:
            out["defects"] = defects
    if device.capabilities:
        out["capabilities"] = dict(device.capabilities)
    if device.spec:
        out["spec"] = dict(device.spec)
    if device.qualification is not None:
        out["qualification"] = qualification_to_dict(device.qualification)
    return out


def fleet_to_toml(
    devices: list[DeviceConfig] | tuple[DeviceConfig, ...], meta: dict[str, Any] | None = None
) -> str:
    doc: dict[str, Any] = {}
    if meta:
        doc["fleet"] = dict(meta)
    doc["device"] = [device_to_dict(d) for d in devices]
    return dumps(doc)


def save_fleet(
    path: str | Path,
    devices: list[DeviceConfig] | tuple[DeviceConfig, ...],
    meta: dict[str, Any] | None = None,
) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(fleet_to_toml(devices, meta))
    tmp.replace(path)  # never leave a half-written fleet file behind
