"""`--emulate 1,0.5,0.25x2`: emulated chip speeds relative to the host."""

from __future__ import annotations

from phalanx.errors import UsageError

MAX_EMULATED_REPLICAS = 64


def parse_emulate(spec: str) -> list[float]:
    """`1,0.5,0.25x2` -> [1.0, 0.5, 0.25, 0.25]."""
    fix = "write speeds relative to this host, e.g. --emulate 1,0.5,0.25x2"
    speeds: list[float] = []
    if not spec or not spec.strip():
        raise UsageError("--emulate", "is empty", fix, spec)
    for item in spec.split(","):
        item = item.strip()
        speed_text, times, count_text = item.partition("x")
        try:
            speed = float(speed_text)
            count = int(count_text) if times else 1
        except ValueError:
            raise UsageError(
                "--emulate", f"item {item!r} is not SPEED or SPEEDxCOUNT", fix, spec
            ) from None
        if not (0 < speed <= 100):
            raise UsageError("--emulate", f"speed {speed_text} must be in (0, 100]", fix, spec)
        if count < 1:
            raise UsageError("--emulate", f"count in {item!r} must be >= 1", fix, spec)
        if len(speeds) + count > MAX_EMULATED_REPLICAS:
            raise UsageError(
                "--emulate",
                "is more chips than this host can emulate",
                f"use at most {MAX_EMULATED_REPLICAS}",
                spec,
            )
        speeds.extend([speed] * count)
    if len(speeds) > MAX_EMULATED_REPLICAS:
        raise UsageError(
            "--emulate",
            f"{len(speeds)} chips is more than this host can emulate",
            f"use at most {MAX_EMULATED_REPLICAS}",
            spec,
        )
    return speeds
