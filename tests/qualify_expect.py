"""The verdicts the 20-chip acceptance fleet (tests/data/defective20.toml) must get."""

from __future__ import annotations

from pathlib import Path

from phalanx.devices.config import DeviceConfig
from phalanx.toml_compat import tomllib

DEFECTIVE20 = Path(__file__).resolve().parent / "data" / "defective20.toml"


def expected_checks() -> dict[str, str]:
    """Device id -> the failed check that must reject it (healthy chips are absent)."""
    return tomllib.loads(DEFECTIVE20.read_text())["fleet"]["expect"]


def assert_verdicts(devices: list[DeviceConfig]) -> None:
    """Every defective chip rejected for its defect; every healthy chip admitted."""
    expect = expected_checks()
    assert len(devices) == 20 and len(expect) == 12
    wrong = []
    for device in devices:
        q = device.qualification
        assert q is not None, device.id
        want = expect.get(device.id)
        if want is None and not q.passed:
            wrong.append(f"{device.id}: healthy but rejected: {q.reasons}")
        elif want is not None and (q.passed or want not in q.failed_checks):
            wrong.append(f"{device.id}: expected {want}, got {q.failed_checks}: {q.reasons}")
        # a defect that needs load or heat must not be blamed on the quick checks
        if (
            want in ("sustained_errors", "sustained_slowdown", "crash")
            and "compute" in q.failed_checks
        ):
            wrong.append(f"{device.id}: {want} chip failed compute before any load")
    assert not wrong, "\n".join(wrong)
