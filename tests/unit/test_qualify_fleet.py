"""Acceptance, in-process: the 20-chip fleet at --level standard for more seeds.

These runs use the scaled time mode (time_scale=0: chip time is not paced
against the wall clock). Every check runs exactly the same operations in the
same chip time as in real time; only the waiting is skipped. The real-time
run is tests/e2e/test_qualify_cli.py.
"""

from __future__ import annotations

import pytest

from phalanx.devices.fleet_file import load_fleet
from phalanx.qualify import Qualifier, get_level
from tests.qualify_expect import DEFECTIVE20, assert_verdicts


@pytest.mark.timeout(240)
@pytest.mark.parametrize("seed", [1, 2])
def test_standard_rejects_every_defective_chip_and_no_healthy_one(seed):
    devices = list(load_fleet(DEFECTIVE20).devices)
    results = Qualifier(devices, get_level("standard"), seed=seed, time_scale=0).run()
    assert_verdicts(results)
    speeds = {d.id: d.qualification.measured_speed for d in results if d.qualification.passed}
    assert speeds["ok-5"] == pytest.approx(0.25, rel=0.02)
    assert speeds["ok-1"] == pytest.approx(1.0, rel=0.02)
