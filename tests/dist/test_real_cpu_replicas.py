"""`phalanx run --devices cpu,cpu`: real, unpaced CPU replicas keep the exact math."""

import os

import pytest

from tests.fleet_helpers import EXACT_ARGS, MLP, events, max_param_diff, phalanx, summary

pytestmark = [pytest.mark.dist, pytest.mark.timeout(300)]


def test_real_cpu_replicas_with_a_kill_inside_the_allreduce_are_exact(tmp_path, reference_run):
    run = tmp_path / "run"
    result = phalanx(
        "run", str(MLP), "--out", str(run), "--devices", "cpu,cpu", "--timeout-s", "2",
        "--quiet", "--fault", "kill:replica=1,step=12,restart_s=1,phase=allreduce",
        "--", *EXACT_ARGS,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert max_param_diff(run, reference_run) < 1e-9
    info = summary(run)
    assert info["completed"] and info["faults"]["survived"] == 1
    assert info["data"]["duplicates"] == info["data"]["missing"] == 0
    starts = [e for e in events(run) if e["kind"] == "worker_start"]
    # Real replicas: not paced to an emulated speed, each on the device it was given.
    assert starts and all(e["speed"] is None and e["device"] == "cpu" for e in starts), starts
    # Two CPU replicas share the host: each gets half its cores (at least one thread).
    cores = os.cpu_count() or 1
    assert {e["threads"] for e in starts} == {max(1, cores // 2)}
    # The fleet view and the report show the replicas' real kind, not "emulated".
    (run_start,) = [e for e in events(run) if e["kind"] == "run_start"]
    assert {r["kind"] for r in run_start["replicas"].values()} == {"cpu"}, run_start
    # The host's sensors during training: its energy when RAPL is readable, else one
    # line that says what goes without them (once for both replicas), and no 0 J claim.
    from phalanx.devices.telemetry.host_cpu import HostCpuTelemetry

    try:
        rapl = HostCpuTelemetry().energy_j() is not None
    except OSError:
        rapl = False
    said = (result.stdout + result.stderr).splitlines()
    notes = [line for line in said if "note: the host CPU" in line]
    if rapl:
        assert info["energy"] and info["energy"]["energy_j"] > 0
    else:
        assert len(notes) == 1 and "its energy is not counted" in notes[0], result.stdout
        assert info["energy"] is None
        assert any(e["kind"] == "device_limits" for e in events(run))
