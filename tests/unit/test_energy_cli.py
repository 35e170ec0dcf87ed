"""Energy flags of `phalanx run`: bad values get one line and exit 2, nothing written."""

import pytest

from tests.fleet_helpers import MLP
from tests.unit.test_fuzz_inputs import run_cli


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--objective", "green"], "--objective"),
        (["--objective", "cost"], "--tariff"),
        (["--power-budget-w", "-5"], "--power-budget-w"),
        (["--max-slowdown", "1.5"], "--max-slowdown"),
        (["--energy-weight", "0"], "--energy-weight"),
        (["--emulation-time-scale", "2"], "--emulation-time-scale"),
        (["--emulate", "1,1", "--power-budget-w", "10"], "--power-budget-w"),
        (["--replicas", "2", "--objective", "energy"], "power model"),
        (["--emulate", "1,1", "--power-budget-w", "200", "--fault", "kill:replica=1,step=3"],
         "replica 1 does not train"),
    ],
)  # fmt: skip
def test_energy_flags_reject_bad_values_with_one_line(tmp_path, flags, needle):
    out = tmp_path / "run"
    code, _stdout, stderr = run_cli(
        ["run", str(MLP), "--out", str(out), *flags, "--", "--steps", "2"]
    )
    lines = stderr.strip().splitlines()
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], stderr
    assert "Traceback" not in stderr
    assert not out.exists(), "nothing may be written for refused input"
