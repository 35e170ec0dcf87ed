"""The thermal guard, closed-loop against the emulated chip's thermal model."""

from __future__ import annotations

import pytest

from phalanx.devices.config import PowerCurve, ThermalConfig
from phalanx.devices.emulated.thermal import ThermalModel
from phalanx.energy.thermal_guard import ThermalGuard
from phalanx.shares.apportion import choose_shares

HOT = ThermalConfig(resistance_c_per_w=0.7, time_constant_s=3.0)  # 25 + 0.7 * P


def _run(
    guard: ThermalGuard | None,
    steps: int = 400,
    step_s: float = 0.3,
    busy: float = 0.65,
    config: ThermalConfig = HOT,
):
    """A chip busy `busy` of each step at full share; the share follows the guard
    with the runtime's lag (a derate decided after step s shapes step s + 2)."""
    model = ThermalModel(config, PowerCurve())
    pending = [1.0, 1.0]
    peak_c, shutdown = 0.0, False
    for _ in range(steps):
        share = pending.pop(0)
        elapsed_s = 0.0
        while elapsed_s < step_s - 1e-9:
            dt_s = min(0.05, step_s - elapsed_s)
            model.step(dt_s, 1.0 if elapsed_s < busy * share * step_s else 0.0)
            elapsed_s += dt_s
        peak_c = max(peak_c, model.temperature_c)
        shutdown = shutdown or model.over_shutdown
        pending.append(guard.derate if guard is not None else 1.0)
        if guard is not None:
            guard.update(model.temperature_c)
    return peak_c, shutdown


def test_unguarded_the_hot_chip_reaches_shutdown():
    peak_c, shutdown = _run(None)
    assert shutdown and peak_c >= HOT.shutdown_c


# The guard acts two steps late (its derate rides the next step's allreduce, then
# shapes the step after): it needs the chip's thermal time constant to span a
# few steps. Real boards take tens of seconds; a step takes well under one.
@pytest.mark.parametrize(("step_s", "tau_s"), [(0.1, 3.0), (0.3, 3.0), (1.0, 10.0)])
def test_guarded_it_stays_below_its_throttle_point(step_s, tau_s):
    guard = ThermalGuard(HOT.throttle_c)
    config = ThermalConfig(resistance_c_per_w=0.7, time_constant_s=tau_s)
    assert _run(None, step_s=step_s, config=config)[1], "unguarded, this chip must shut down"
    peak_c, shutdown = _run(guard, step_s=step_s, config=config)
    assert not shutdown
    assert peak_c < HOT.throttle_c


def test_share_comes_back_as_the_chip_cools():
    guard = ThermalGuard(85.0)
    assert guard.update(80.0).action == "derate"
    assert guard.derate == 0.5 and guard.heat == 0.5
    assert guard.update(70.0) is None  # between the margins: hold
    restored = guard.update(60.0)
    assert restored.action == "restore" and guard.derate > 0.5
    for _ in range(40):
        guard.update(50.0)
    assert guard.derate == 1.0 and guard.heat == 0.0


def test_unknown_temperature_changes_nothing():
    guard = ThermalGuard(85.0)
    assert guard.update(None) is None and guard.derate == 1.0


def test_margins_must_leave_a_hysteresis_band():
    with pytest.raises(ValueError, match="hysteresis"):
        ThermalGuard(85.0, approach_margin_c=10, release_margin_c=5)


def test_a_derate_cuts_the_share_at_once_past_damping_and_deadband():
    names = ["a", "b", "c"]
    previous = {"a": 16, "b": 16, "c": 16}
    table = {"a": 100.0, "b": 100.0, "c": 100.0}
    plain = choose_shares(names, 48, table, previous)
    assert plain == [16, 16, 16]
    cut = choose_shares(names, 48, table, previous, derates={"c": 0.25})
    assert cut[2] <= 6 and sum(cut) == 48
    off = choose_shares(names, 48, table, previous, derates={"c": 0.0})
    assert off[2] == 0 and sum(off) == 48
