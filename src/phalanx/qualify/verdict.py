"""Turn check results into pass/fail, reasons a person can act on, and numbers.

Failed check names (machine-readable, in `failed_checks`):
compute, memory, sustained_errors, sustained_slowdown, crash, hang.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from phalanx.devices.config import DeviceConfig, Qualification
from phalanx.devices.specs import spec_for
from phalanx.qualify.compute_check import ComputeResult
from phalanx.qualify.levels import Level
from phalanx.qualify.memory_check import MemoryResult
from phalanx.qualify.profile import Profile
from phalanx.qualify.sustained_check import SustainedResult

LOW_PEAK_FRACTION = 0.2  # below this fraction of the datasheet peak: warn
GIB = 2**30


@dataclass
class Findings:
    compute: ComputeResult | None = None
    memory: MemoryResult | None = None
    sustained: SustainedResult | None = None
    profile: Profile | None = None
    failed: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def fail(self, check: str, reason: str) -> None:
        if check not in self.failed:
            self.failed.append(check)
        self.reasons.append(f"{check}: {reason}")


def judge_compute(f: Findings) -> None:
    c = f.compute
    if c is None:
        return
    if c.wrong_elements:
        per_dtype = ", ".join(f"{d} {n.wrong}/{n.checked:,}" for d, n in c.exact.items() if n.wrong)
        rate = c.wrong_elements / c.elements_checked
        f.fail(
            "compute",
            f"{c.wrong_elements} wrong results in {c.elements_checked:,} exact matmul outputs (rate {rate:.1e}; {per_dtype})",
        )
    for error in c.errors:
        f.fail("compute", error)


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / GIB:.1f}"


def judge_memory(f: Findings, level: Level) -> None:
    """Any bad byte rejects the device; memory that was not tested is capped away.

    A bad region rejects the device rather than capping its memory below the
    region: on a real device the driver, not the address, decides which
    physical pages a process gets, so a cap cannot steer training around a
    bad page, and a cell that fails once is often the first of several.
    """
    m = f.memory
    if m is None:
        return
    if m.bad_bytes:
        scaled = f" (tested at 1:{m.scale:.0f} scale)" if m.scale > 1.5 else ""
        f.fail(
            "memory",
            f"{m.bad_bytes} bad bytes in {m.checked_bytes:,} checked{scaled}, first at offset 0x{m.first_bad_offset:x} with pattern {m.first_bad_pattern}",
        )
        return
    if not m.checked_bytes and not m.host_memory:
        f.fail(
            "memory",
            "no memory could be tested (the device reported no free memory), and untested memory must not train",
        )
        return
    total = m.device_memory_bytes
    if total is None or m.checked_bytes >= total:
        return
    tested = f"tested {_gib(m.checked_bytes)} of {_gib(total)} GiB ({m.checked_bytes / total:.1%})"
    if m.host_memory:
        f.warnings.append(
            f"memory: {tested} of host RAM; not capped: the OS places pages anywhere in RAM, so the host's ECC is the guard"
        )
    elif level.memory_fraction < 1.0:
        f.warnings.append(
            f"memory: {tested}; usable memory capped at {_gib(m.checked_bytes)} GiB (--level standard tests all free memory)"
        )
    else:
        f.warnings.append(
            f"memory: {tested}; usable memory capped at {_gib(m.checked_bytes)} GiB (the rest was not free: held by the driver or other processes)"
        )


def judge_sustained(f: Findings, level: Level, kind: str = "") -> None:
    s = f.sustained
    if s is None or not s.windows:
        return
    first = s.first_wrong()
    if first is not None:
        temp = (
            f" at {first.sample.temperature_c:.0f} °C"
            if first.sample.temperature_c is not None
            else ""
        )
        f.fail(
            "sustained_errors",
            f"{s.wrong} wrong results in {s.checked:,} outputs under load, first in the window ending {first.end_s:.0f} s into the load{temp}",
        )
    drop = s.throughput_drop()
    rolling = s.rolling_gflops()
    why = "with thermal throttling" if s.thermally_throttled() else "no throttling reported"
    hottest_c = s.max_temperature_c()
    temp_text = f", up to {hottest_c:.0f} °C" if hottest_c is not None else ""
    if drop > level.max_throughput_drop and kind == "cpu":
        # The host CPU shares its cores with the OS and every other process (and,
        # in a VM, with other tenants): its speed moves for reasons that are not
        # defects, so a drop there is reported, not held against it.
        f.warnings.append(
            f"throughput varied {drop:.0%} under load ({min(rolling):.1f}-{max(rolling):.1f} GFLOP/s); a host CPU shares its cores, so this is not judged"
        )
    elif drop > level.max_throughput_drop:
        f.fail(
            "sustained_slowdown",
            f"throughput fell {drop:.0%} under load, {max(rolling):.1f} -> {min(rolling):.1f} GFLOP/s ({why}{temp_text})",
        )
    elif s.thermally_throttled():
        f.warnings.append(
            f"thermal throttling during sustained load{temp_text}; throughput held within {drop:.0%}"
        )


def judge_peak(f: Findings, device: DeviceConfig) -> None:
    spec = spec_for(device.model)
    gflops = f.sustained.steady_gflops() if f.sustained else None
    if spec is None or gflops is None:
        return
    fraction = gflops * 1e9 / spec.peak_flops_float32
    if fraction < LOW_PEAK_FRACTION:
        f.warnings.append(
            f"float32 matmul at {fraction:.0%} of the datasheet peak ({gflops:.0f} GFLOP/s)"
        )


def build_qualification(
    device: DeviceConfig,
    f: Findings,
    level: Level,
    seed: int,
    duration_s: float,
    time_scale: float | None,
    host_gflops: float,
) -> Qualification:
    s, m, c, p = f.sustained, f.memory, f.compute, f.profile
    gflops = s.steady_gflops() if s else None
    energy = s.energy.energy_j if s and s.energy else None
    reasons = f.reasons
    return Qualification(
        passed=not f.failed,
        level=level.name,
        seed=seed,
        failed_checks=tuple(f.failed),
        reasons=tuple(reasons),
        warnings=tuple(f.warnings),
        duration_s=round(duration_s, 3),
        time_scale=time_scale if device.emulated else None,
        gflops=round(gflops, 3) if gflops else None,
        measured_speed=round(gflops / host_gflops, 4) if gflops and host_gflops else None,
        elements_checked=(c.elements_checked if c else 0) + (s.checked if s else 0),
        wrong_elements=(c.wrong_elements if c else 0) + (s.wrong if s else 0),
        memory_checked_bytes=m.checked_bytes if m else None,
        memory_scale=round(m.scale, 3) if m else None,
        bad_memory_bytes=m.bad_bytes if m else None,
        memory_tested_fraction=round(frac, 4)
        if m and (frac := m.tested_fraction) is not None
        else None,
        usable_memory_bytes=m.usable_bytes if m else None,
        sustained_s=round(s.duration_s, 3) if s else None,
        throughput_drop=round(s.throughput_drop(), 4) if s and s.windows else None,
        max_temperature_c=round(t, 2) if s and (t := s.max_temperature_c()) is not None else None,
        max_power_w=round(w, 2) if s and (w := s.max_power_w()) is not None else None,
        throttled=s.thermally_throttled() if s and s.throttle_reasons() is not None else None,
        energy_j=round(energy, 3) if energy is not None else None,
        profile_microbatches=p.microbatches if p else (),
        profile_samples_per_s=tuple(round(r, 2) for r in p.samples_per_s) if p else (),
        max_microbatch=p.max_microbatch if p else None,
    )
