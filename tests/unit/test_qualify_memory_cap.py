"""Untested memory never trains: bad memory anywhere rejects the chip or lies above its cap.

Issue 13, item 5: a 16 GiB chip with a 64-byte bad region at 15 GiB passed a
qualification that tested half its memory, and the verdict did not say so.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.devices.config import Defects, DeviceConfig, MemoryRegion
from phalanx.devices.emulated import EmulatedChip
from phalanx.devices.memory_window import TorchMemoryWindow
from phalanx.devices.memory_window import torch as window_torch
from phalanx.qualify import Qualifier, get_level
from phalanx.qualify.memory_check import (
    CHECK_RESERVE_BYTES,
    MemoryResult,
    check_memory,
    memory_budget_bytes,
)
from phalanx.qualify.verdict import Findings, judge_memory

GIB = 2**30
MIB = 2**20
quiet = lambda _msg: None  # noqa: E731


def fast(level_name: str):
    """A level's memory test as it is, its other checks cut short (they are tested elsewhere)."""
    return dataclasses.replace(
        get_level(level_name),
        exact_elements=2**20,
        tolerance_repeats=1,
        emulated_tested_bytes=4 * MIB,
        sustained_s=6.0,
        windows=3,
        probe_matmuls=1,
        profile_microbatches=(4,),
        profile_repeats=1,
    )


def issue_chip(offset_bytes: int = 15 * GIB) -> DeviceConfig:
    """The chip of the issue: 16 GiB, 64 bad bytes at 15 GiB."""
    return DeviceConfig(
        id="badmem-high",
        kind="emulated",
        speed=1.0,
        memory_bytes=16 * GIB,
        defects=Defects(bad_memory=(MemoryRegion(offset_bytes=offset_bytes, length_bytes=64),)),
    )


def test_quick_admits_the_issue_chip_only_with_its_memory_capped_below_the_bad_region():
    (result,) = Qualifier([issue_chip()], fast("quick"), time_scale=0).run()
    q = result.qualification
    assert q.passed, q.reasons
    assert q.usable_memory_bytes == 4 * GIB < 15 * GIB  # a quarter tested, the rest given up
    assert q.memory_checked_bytes == 4 * GIB and q.memory_tested_fraction == 0.25
    assert (
        "memory: tested 4.0 of 16.0 GiB (25.0%); usable memory capped at 4.0 GiB "
        "(--level standard tests all free memory)"
    ) in q.warnings


def test_standard_tests_all_the_memory_and_rejects_the_issue_chip():
    (result,) = Qualifier([issue_chip()], fast("standard"), time_scale=0).run()
    q = result.qualification
    assert not q.passed and q.failed_checks == ("memory",)
    assert q.memory_tested_fraction == 1.0 and q.usable_memory_bytes is None
    assert "first at offset 0x3c" in q.reasons[0]  # 15 GiB = 0x3c0000000, to the scale


def test_a_healthy_chip_at_standard_keeps_all_its_memory_and_no_warning():
    healthy = dataclasses.replace(issue_chip(), defects=Defects())
    (result,) = Qualifier([healthy], fast("standard"), time_scale=0).run()
    q = result.qualification
    assert q.passed and q.usable_memory_bytes == 16 * GIB and q.memory_tested_fraction == 1.0
    assert not any(w.startswith("memory:") for w in q.warnings)


@settings(max_examples=40, deadline=None)
@given(
    offset_bytes=st.integers(min_value=0, max_value=16 * GIB - 64),
    fraction=st.sampled_from([0.1, 0.25, 0.5, 0.9, 1.0]),
)
def test_bad_memory_anywhere_is_rejected_or_above_the_cap(offset_bytes, fraction):
    level = dataclasses.replace(fast("quick"), memory_fraction=fraction, emulated_tested_bytes=MIB)
    chip = EmulatedChip(issue_chip(offset_bytes), seed=0, time_scale=0)
    findings = Findings(memory=check_memory(chip, level, 0, quiet))
    judge_memory(findings, level)
    usable = findings.memory.usable_bytes
    if "memory" not in findings.failed:
        assert usable is not None and usable <= offset_bytes


def test_host_ram_is_tested_in_part_said_so_and_not_capped():
    m = MemoryResult(
        checked_bytes=GIB, tested_bytes=GIB, device_memory_bytes=64 * GIB, host_memory=True
    )
    f = Findings(memory=m)
    judge_memory(f, get_level("standard"))
    assert not f.failed and m.usable_bytes is None
    assert f.warnings == [
        "memory: tested 1.0 of 64.0 GiB (1.6%) of host RAM; not capped: the OS places pages "
        "anywhere in RAM, so the host's ECC is the guard"
    ]


def test_memory_held_by_others_is_capped_away_with_the_reason():
    m = MemoryResult(checked_bytes=70 * GIB, tested_bytes=70 * GIB, device_memory_bytes=80 * GIB)
    f = Findings(memory=m)
    judge_memory(f, get_level("standard"))
    assert not f.failed and m.usable_bytes == 70 * GIB
    assert "usable memory capped at 70.0 GiB (the rest was not free" in f.warnings[0]


def test_a_device_whose_memory_cannot_be_tested_fails():
    f = Findings(memory=MemoryResult(checked_bytes=0, tested_bytes=0, device_memory_bytes=GIB))
    judge_memory(f, get_level("standard"))
    assert f.failed == ["memory"] and "untested memory must not train" in f.reasons[0]


def _device(kind: str, free_bytes: int) -> SimpleNamespace:
    config = DeviceConfig(id="d", kind=kind)
    return SimpleNamespace(config=config, free_memory_bytes=lambda: free_bytes)


def test_budget_leaves_room_for_the_check_and_bounds_host_ram():
    standard = get_level("standard")
    assert (
        memory_budget_bytes(_device("cuda", 80 * GIB), standard) == 80 * GIB - CHECK_RESERVE_BYTES
    )
    assert memory_budget_bytes(_device("cuda", 80 * GIB), get_level("quick")) == 20 * GIB
    assert memory_budget_bytes(_device("cpu", 64 * GIB), standard) == standard.host_memory_cap_bytes
    assert memory_budget_bytes(_device("mps", 64 * GIB), standard) == standard.host_memory_cap_bytes
    assert memory_budget_bytes(_device("cuda", MIB), standard) == 0  # never negative


def test_a_real_window_takes_smaller_chunks_after_out_of_memory(monkeypatch):
    """The last free gigabyte is still tested when no 1 GiB chunk fits."""
    pool = {"free": 203 * MIB}
    real_empty = torch.empty

    def empty(n, dtype, device):
        if n > pool["free"]:
            raise torch.OutOfMemoryError("out of memory")
        pool["free"] -= n
        return real_empty(1, dtype=dtype).expand(n)  # n elements, one byte of storage

    monkeypatch.setattr(window_torch, "empty", empty)
    window = TorchMemoryWindow(torch.device("cpu"), GIB, span_bytes=MIB)
    monkeypatch.undo()
    assert 202 * MIB <= window.size_bytes <= 203 * MIB
    assert window.size_bytes == sum(c.numel() for c in window.chunks)
