"""Qualify a fleet: every device through every check, in parallel where independent.

Devices run in one thread each (torch releases the GIL while it computes;
emulated chips mostly wait in chip time). The host CPU, when it is itself a
device under test, is qualified afterwards on its own with all its threads,
so it neither slows the others nor is measured while they use it.

A watchdog marks a device that reports no progress for `hang_timeout_s` as
hung, asks it to cancel and moves on: a hang must fail, not stall the fleet.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from phalanx.devices.compute import ComputeDevice, open_device
from phalanx.devices.config import DeviceConfig, Qualification
from phalanx.devices.emulated import DeviceCancelled, DeviceCrashed
from phalanx.qualify.compute_check import check_compute
from phalanx.qualify.levels import Level
from phalanx.qualify.memory_check import check_memory
from phalanx.qualify.profile import profile_reference, profile_script
from phalanx.qualify.sustained_check import SustainedResult, check_sustained
from phalanx.qualify.verdict import (
    Findings,
    build_qualification,
    judge_compute,
    judge_memory,
    judge_peak,
    judge_sustained,
)
from phalanx.qualify.workloads import host_reference_gflops

PHASES = ("compute", "memory", "sustained", "profile")
BASE_HANG_TIMEOUT_S = 120.0


@dataclass
class Progress:
    device_id: str
    phase: str  # waiting, compute, memory, sustained, profile, done
    detail: str = ""
    status: str = "running"  # waiting, running, passed, failed
    temperature_c: float | None = None
    power_w: float | None = None
    reasons: tuple[str, ...] = ()


class _Slot:
    """One device's worker state, shared with the watchdog."""

    def __init__(self, config: DeviceConfig) -> None:
        self.config = config
        self.device: ComputeDevice | None = None
        self.phase = "waiting"
        self.last_progress_s = time.monotonic()
        self.result: Qualification | None = None
        self.lock = threading.Lock()

    def settle(self, result: Qualification) -> bool:
        """Keep the first verdict (the watchdog's or the worker's)."""
        with self.lock:
            if self.result is not None:
                return False
            self.result = result
            return True


class Qualifier:
    def __init__(
        self,
        devices: list[DeviceConfig],
        level: Level,
        *,
        seed: int = 0,
        time_scale: float = 1.0,
        on_progress: Callable[[Progress], None] | None = None,
        hang_timeout_s: float | None = None,
        script: str | Path | None = None,
    ) -> None:
        self.devices = devices
        self.level = level
        self.seed = seed
        self.time_scale = time_scale
        self.on_progress = on_progress or (lambda _p: None)
        self.script = script
        window_s = level.sustained_s / level.windows
        self.hang_timeout_s = hang_timeout_s or BASE_HANG_TIMEOUT_S + 3 * window_s * max(
            time_scale, 1.0
        )
        self.host_gflops = 0.0

    def run(self) -> list[DeviceConfig]:
        """The devices, each with its `qualification` filled in, in the given order."""
        self.host_gflops = host_reference_gflops()
        slots = [_Slot(d) for d in self.devices]
        for slot in slots:
            self.on_progress(Progress(slot.config.id, "waiting", status="waiting"))
        parallel = [s for s in slots if s.config.kind != "cpu"]
        host_cpus = [s for s in slots if s.config.kind == "cpu"]
        threads_before = torch.get_num_threads()
        if any(s.config.emulated for s in parallel):
            torch.set_num_threads(1)  # one core per emulated chip at a time (see emulated/host.py)
        try:
            self._run_group(parallel)
        finally:
            torch.set_num_threads(threads_before)
        for slot in host_cpus:
            self._run_group([slot])
        return [dataclasses.replace(s.config, qualification=s.result) for s in slots]

    def _run_group(self, slots: list[_Slot]) -> None:
        threads = [
            threading.Thread(
                target=self._worker, args=(s,), name=f"qualify-{s.config.id}", daemon=True
            )
            for s in slots
        ]
        for slot, thread in zip(slots, threads, strict=True):
            slot.last_progress_s = time.monotonic()
            thread.start()
        try:
            # A hung device's thread may never return: once the watchdog has
            # given its verdict the thread is abandoned (it is a daemon).
            while any(
                t.is_alive() and s.result is None for s, t in zip(slots, threads, strict=True)
            ):
                for slot, thread in zip(slots, threads, strict=True):
                    thread.join(timeout=0.05)
                    if thread.is_alive():
                        self._watch(slot)
        except BaseException:
            for slot in slots:
                if slot.device is not None:
                    slot.device.cancel()
            raise

    def _watch(self, slot: _Slot) -> None:
        silent_s = time.monotonic() - slot.last_progress_s
        if slot.result is not None or silent_s < self.hang_timeout_s:
            return
        findings = Findings()
        findings.fail("hang", f"no progress for {silent_s:.0f} s during {slot.phase}")
        if slot.settle(self._verdict(slot.config, findings, silent_s)):
            self._emit(slot, "done", "hung", findings)
            if slot.device is not None:
                slot.device.cancel()

    def _emit(self, slot: _Slot, phase: str, detail: str, findings: Findings | None = None) -> None:
        slot.last_progress_s = time.monotonic()
        sample = slot.device.telemetry.sample() if slot.device is not None else None
        status = "running"
        reasons: tuple[str, ...] = ()
        if phase == "done" and findings is not None:
            status = "failed" if findings.failed else "passed"
            reasons = tuple(findings.reasons)
        self.on_progress(
            Progress(
                slot.config.id,
                phase,
                detail,
                status,
                temperature_c=sample.temperature_c if sample else None,
                power_w=sample.power_w if sample else None,
                reasons=reasons,
            )
        )

    def _verdict(
        self, config: DeviceConfig, findings: Findings, duration_s: float
    ) -> Qualification:
        judge_compute(findings)
        judge_memory(findings, self.level)
        judge_sustained(findings, self.level, config.kind)
        judge_peak(findings, config)
        time_scale = self.time_scale if config.emulated else None
        return build_qualification(
            config, findings, self.level, self.seed, duration_s, time_scale, self.host_gflops
        )

    def _worker(self, slot: _Slot) -> None:
        start_s = time.perf_counter()
        findings = Findings()
        try:
            slot.device = device = open_device(
                slot.config, seed=self.seed, time_scale=self.time_scale
            )
        except Exception as err:
            findings.fail("crash", f"cannot open the device: {type(err).__name__}: {err}")
            if slot.settle(self._verdict(slot.config, findings, time.perf_counter() - start_s)):
                self._emit(slot, "done", "cannot open", findings)
            return
        findings.sustained = SustainedResult()
        for phase in PHASES:
            slot.phase = phase

            def progress(detail: str, phase: str = phase) -> None:
                self._emit(slot, phase, detail)

            progress("starting")
            try:
                self._run_phase(phase, device, findings, progress)
            except DeviceCancelled:
                break  # the watchdog has already given its verdict
            except DeviceCrashed as err:
                findings.fail("crash", f"{err} (during {phase})")
                break
            except Exception as err:
                findings.fail("crash", f"during {phase}: {type(err).__name__}: {err}")
                break
        device.close()
        result = self._verdict(slot.config, findings, time.perf_counter() - start_s)
        if slot.settle(result):
            self._emit(slot, "done", "passed" if result.passed else "failed", findings)

    def _run_phase(
        self, phase: str, device: ComputeDevice, findings: Findings, progress: Callable[[str], None]
    ) -> None:
        if phase == "compute":
            findings.compute = check_compute(device, self.level, self.seed, progress)
        elif phase == "memory":
            findings.memory = check_memory(device, self.level, self.seed, progress)
        elif phase == "sustained":
            check_sustained(device, self.level, self.seed, progress, partial=findings.sustained)
        elif phase == "profile":
            if self.script is not None:
                findings.profile = profile_script(self.script, device)
            else:
                # Micro-batches are sized to the memory training may use, not all of it.
                usable = findings.memory.usable_bytes if findings.memory else None
                findings.profile = profile_reference(device, self.level, progress, usable)
