"""devices/memory_cap.py: the usable memory a fleet file allows, and holding a process to it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from phalanx.devices.config import DeviceConfig, Qualification
from phalanx.devices.fleet_file import device_to_dict
from phalanx.devices.memory_cap import (
    MemoryCapExceeded,
    apply_memory_cap,
    check_within_cap,
    usable_memory_bytes,
    usable_memory_of_table,
)
from phalanx.errors import UsageError

GIB = 2**30


def chip(memory_bytes: int | None = 16 * GIB, cap: int | None = None) -> DeviceConfig:
    q = Qualification(passed=True, level="quick", usable_memory_bytes=cap)
    return DeviceConfig(id="a", kind="cuda", memory_bytes=memory_bytes, qualification=q)


def test_the_cap_wins_over_the_device_memory():
    assert usable_memory_bytes(chip(cap=4 * GIB)) == 4 * GIB
    assert usable_memory_bytes(chip(cap=None)) == 16 * GIB  # no cap: host RAM, or an old file
    assert usable_memory_bytes(chip(memory_bytes=None, cap=4 * GIB)) == 4 * GIB
    assert usable_memory_bytes(chip(memory_bytes=None)) is None
    assert usable_memory_bytes(dataclasses.replace(chip(), qualification=None)) == 16 * GIB


def test_a_worker_reads_the_cap_from_its_device_table():
    table = device_to_dict(chip(cap=4 * GIB))
    assert table["qualification"]["usable_memory_bytes"] == 4 * GIB
    assert usable_memory_of_table(table) == 4 * GIB
    table["qualification"]["usable_memory_bytes"] = "4GiB"
    with pytest.raises(UsageError) as info:
        usable_memory_of_table(table)
    assert info.value.field == "device[0].qualification.usable_memory_bytes"


class _Allocator:
    """Stands in for torch.cuda: records the fraction it is asked to enforce."""

    def __init__(self, total_bytes: int) -> None:
        self.total_bytes = total_bytes
        self.calls: list[tuple[float, torch.device]] = []

    def get_device_properties(self, device: torch.device) -> object:
        return type("Props", (), {"total_memory": self.total_bytes})()

    def set_per_process_memory_fraction(self, fraction: float, device: torch.device) -> None:
        self.calls.append((fraction, device))


def test_apply_caps_a_cuda_process_to_the_tested_bytes(monkeypatch):
    fake = _Allocator(total_bytes=16 * GIB)
    monkeypatch.setattr(torch, "cuda", fake)
    assert apply_memory_cap("cuda:1", 4 * GIB) == 0.25
    assert fake.calls == [(0.25, torch.device("cuda:1"))]
    assert apply_memory_cap("cuda:1", 32 * GIB) == 1.0  # never more than the whole device


def test_apply_does_nothing_where_there_is_nothing_to_cap(monkeypatch):
    fake = _Allocator(total_bytes=16 * GIB)
    monkeypatch.setattr(torch, "cuda", fake)
    assert apply_memory_cap("cuda:0", None) is None
    assert apply_memory_cap("cpu", 4 * GIB) is None  # host RAM (and emulated chips)
    assert fake.calls == []
    monkeypatch.setattr(torch, "xpu", object())  # a backend whose allocator takes no limit
    assert apply_memory_cap("xpu:0", 4 * GIB) is None


def test_work_over_the_cap_is_refused_with_the_numbers():
    check_within_cap("emu0", 4 * GIB, 4 * GIB, "a share of 96 samples")  # at the cap: fits
    check_within_cap("emu0", None, 100 * GIB, "a share of 96 samples")  # no cap known
    with pytest.raises(MemoryCapExceeded) as info:
        check_within_cap("emu0", 4 * GIB, 5 * GIB, "a share of 96 samples")
    assert str(info.value) == (
        "emu0: a share of 96 samples needs 5.00 GiB, more than the 4.00 GiB "
        "qualification tested and allows"
    )
