"""Progress display: a live table on a terminal, plain lines in logs."""

from __future__ import annotations

import io

from rich.console import Console

from phalanx.devices.config import DeviceConfig, Qualification
from phalanx.qualify.display import ProgressView, print_summary
from phalanx.qualify.runner import Progress

EVENTS = [
    Progress("emu0", "waiting", status="waiting"),
    Progress("emu0", "compute", "starting", temperature_c=30.0, power_w=250.0),
    Progress("emu0", "compute", "float32 exact 4/24"),
    Progress("emu0", "sustained", "3/12: 97.0 GFLOP/s, 55 °C, 0 wrong"),
    Progress(
        "emu0", "done", "failed", status="failed", reasons=("crash: crashed after 30.0 s of load",)
    ),
]


def test_plain_lines_one_per_phase_and_verdict():
    out = io.StringIO()
    with ProgressView(Console(file=out, width=200), live=False) as view:
        for event in EVENTS:
            view(event)
    assert out.getvalue().splitlines() == [
        "[emu0] compute",
        "[emu0] sustained",
        "[emu0] FAILED: crash: crashed after 30.0 s of load",
    ]


def test_live_table_on_a_terminal():
    out = io.StringIO()
    with ProgressView(Console(file=out, width=160, force_terminal=True), live=True) as view:
        for event in EVENTS:
            view(event)
    text = out.getvalue()
    assert "phalanx qualify" in text and "emu0" in text and "failed" in text


def test_summary_lines_carry_every_reason():
    q = Qualification(
        passed=False,
        level="quick",
        failed_checks=("memory", "crash"),
        reasons=("memory: 4 bad bytes", "crash: boom"),
        gflops=12.0,
        measured_speed=0.5,
        memory_checked_bytes=2**30,
        duration_s=3.0,
    )
    out = io.StringIO()
    print_summary(
        [DeviceConfig(id="emu1", kind="emulated", qualification=q)], Console(file=out, width=100)
    )
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(
        "emu1: FAIL  12.0 GFLOP/s  speed 0.500  memory tested 1.0 GiB, usable -"
    )
    assert lines[1:] == ["    memory: 4 bad bytes", "    crash: boom"]


def test_summary_says_how_much_memory_was_tested_and_what_may_train():
    warning = "memory: tested 4.0 of 16.0 GiB (25.0%); usable memory capped at 4.0 GiB (--level standard tests all free memory)"
    q = Qualification(
        passed=True,
        level="quick",
        memory_checked_bytes=4 * 2**30,
        usable_memory_bytes=4 * 2**30,
        warnings=(warning,),
    )
    device = DeviceConfig(id="emu2", kind="emulated", memory_bytes=16 * 2**30, qualification=q)
    out = io.StringIO()
    print_summary([device], Console(file=out, width=100))
    lines = out.getvalue().splitlines()
    assert "memory tested 4.0 of 16.0 GiB, usable 4.0 GiB" in lines[0]
    assert lines[1:] == [f"    warning: {warning}"]
    wide = io.StringIO()
    print_summary([device], Console(file=wide, width=250, force_terminal=True))
    assert "│ tested 4.0 of 16.0 GiB │ 4.0 GiB │" in wide.getvalue()  # memory, usable
