from phalanx.observe.energy_summary import device_energy_j, energy_summary


def _step(name, joules):
    return {"kind": "step", "replica": name, "source": name, "energy_j": joules}


def test_energy_adds_up_over_process_lives_and_prices_it():
    events = [
        {"kind": "worker_start", "replica": "r0"},
        _step("r0", 10.0),
        _step("r0", 20.0),
        {"kind": "worker_start", "replica": "r0"},  # restarted: its counter starts at zero again
        _step("r0", 5.0),
        {"kind": "worker_start", "replica": "r1"},
        _step("r1", 7.0),
    ]
    assert device_energy_j(events) == {"r0": 25.0, "r1": 7.0}
    summary = energy_summary(
        events, samples=64, start={"tariff_per_kwh": 0.1, "co2_g_per_kwh": 500}
    )
    assert summary["energy_j"] == 32.0
    assert summary["j_per_sample"] == 0.5
    assert abs(summary["cost_estimate"] / (32.0 / 3.6e6 * 0.1) - 1) < 1e-3  # rounded to 1e-9
    assert abs(summary["co2_g_estimate"] / (32.0 / 3.6e6 * 500) - 1) < 1e-3


def test_no_readings_means_no_energy_rather_than_zero():
    assert energy_summary([{"kind": "step", "replica": "r0", "source": "r0"}], 64, {}) is None
