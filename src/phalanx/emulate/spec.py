"""`--emulate 1,0.5:max_share=4,0.25x2`: emulated chips, speeds relative to the host.

Grammar: comma-separated items `SPEED[xCOUNT][:KEY=VALUE]...`. Options apply to
every chip of the item:

- `max_share=N`: never give this chip more than N samples of a step (a chip
  shared with other work, or known to hold no more);
- `kind=NAME`: the chip is of another kind (vendor): its optimizer kernels round
  differently (emulate/other_kind.py), as a CPU beside a GPU or two vendors do;
- `mem=SIZE` (`2GiB`, `512MiB`, `1.5GB`): the chip's memory, which binds: a
  replica whose state and activations do not fit fails as on a real chip
  (emulate/memory.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from phalanx.emulate.memory_size import parse_size_bytes
from phalanx.errors import UsageError

MAX_EMULATED_REPLICAS = 64
FIX = "write speeds relative to this host, e.g. --emulate 1,0.5:max_share=8,0.25x2"


@dataclass(frozen=True)
class EmulatedChip:
    speed: float
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str | None:
        value = self.options.get("kind")
        return None if value is None else str(value)

    @property
    def max_share(self) -> int | None:
        value = self.options.get("max_share")
        return None if value is None else int(value)

    @property
    def memory_bytes(self) -> int | None:
        value = self.options.get("mem")
        return None if value is None else int(value)


def _positive_int(key: str, raw: str, spec: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"--emulate: {key}", "must be a whole number >= 1", FIX, spec)
    return value


def _kind_name(key: str, raw: str, spec: str) -> str:
    if not raw.isidentifier():
        raise UsageError(f"--emulate: {key}", "must be a name (letters, digits, _)", FIX, spec)
    return raw


def _memory_size(key: str, raw: str, spec: str) -> int:
    size = parse_size_bytes(raw)
    if size is None:
        raise UsageError(
            f"--emulate: {key}",
            f"{raw!r} is not a memory size",
            "write it with a unit, e.g. mem=2GiB, mem=512MiB or mem=1.5GB",
            spec,
        )
    return size


_OPTIONS = {"max_share": _positive_int, "kind": _kind_name, "mem": _memory_size}


def _options(item: str, texts: list[str], spec: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for text in texts:
        key, eq, raw = text.partition("=")
        key = key.strip()
        if not eq or key not in _OPTIONS:
            raise UsageError(
                "--emulate",
                f"option {text!r} of item {item!r} is not one of {', '.join(_OPTIONS)} (KEY=VALUE)",
                FIX,
                spec,
            )
        if key in options:
            raise UsageError("--emulate", f"option {key} given twice in {item!r}", FIX, spec)
        options[key] = _OPTIONS[key](key, raw.strip(), spec)
    return options


def parse_emulate_chips(spec: str) -> list[EmulatedChip]:
    """`1,0.5:max_share=4,0.25x2` -> four chips, the second capped at 4 samples."""
    chips: list[EmulatedChip] = []
    if not spec or not spec.strip():
        raise UsageError("--emulate", "is empty", FIX, spec)
    for item in spec.split(","):
        item = item.strip()
        head, *option_texts = item.split(":")
        speed_text, times, count_text = head.partition("x")
        try:
            speed = float(speed_text)
            count = int(count_text) if times else 1
        except ValueError:
            raise UsageError(
                "--emulate", f"item {item!r} is not SPEED or SPEEDxCOUNT", FIX, spec
            ) from None
        if not (0 < speed <= 100):
            raise UsageError("--emulate", f"speed {speed_text} must be in (0, 100]", FIX, spec)
        if count < 1:
            raise UsageError("--emulate", f"count in {item!r} must be >= 1", FIX, spec)
        if len(chips) + count > MAX_EMULATED_REPLICAS:
            raise UsageError(
                "--emulate",
                "is more chips than this host can emulate",
                f"use at most {MAX_EMULATED_REPLICAS}",
                spec,
            )
        options = _options(item, option_texts, spec)
        chips.extend(EmulatedChip(speed, options) for _ in range(count))
    return chips


def parse_emulate(spec: str) -> list[float]:
    """`1,0.5,0.25x2` -> [1.0, 0.5, 0.25, 0.25] (the speeds only)."""
    return [chip.speed for chip in parse_emulate_chips(spec)]
