"""`--fault lighthouse:step=S[,restart_s=R]`: a fault of the fleet's lighthouse, not a replica's."""

import pytest

from phalanx.errors import UsageError
from phalanx.faults.spec import NO_REPLICA, FaultSpec, parse_fault


def test_lighthouse_fault_parses_and_round_trips():
    fault = parse_fault("lighthouse:step=30", 4)
    assert (fault.kind, fault.replica, fault.step, fault.params) == (
        "lighthouse",
        NO_REPLICA,
        30,
        {},
    )
    assert FaultSpec.from_json(fault.to_json()) == fault
    assert parse_fault("lighthouse:step=5,restart_s=2.5").params == {"restart_s": 2.5}


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("lighthous:step=30", "did you mean lighthouse?"),
        ("lighthouse", "write lighthouse:step=S"),
        ("lighthouse:stpe=30", "unknown key 'stpe' for kind lighthouse"),
        ("lighthouse:replica=1,step=30", "the lighthouse is not a replica"),
        ("lighthouse:restart_s=1", "missing step"),
        ("lighthouse:step=-1", "must not be negative"),
        ("lighthouse:step=3,restart_s=inf", "finite"),
        ("lighthouse:step=3,phase=commit", "unknown key 'phase'"),
    ],
)
def test_lighthouse_fault_typos_name_the_fix(spec, needle):
    with pytest.raises(UsageError) as err:
        parse_fault(spec, 4)
    message = err.value.message()
    assert needle in message and "Fix:" in message and "\n" not in message


def test_a_lighthouse_fault_needs_the_local_lighthouse(tmp_path):
    from phalanx.launch.launcher import RunPlan, validate_plan
    from tests.fleet_helpers import MLP

    plan = RunPlan(
        script=MLP,
        out_dir=tmp_path / "run",
        speeds=[None, None],
        faults=[parse_fault("lighthouse:step=3")],
        lighthouse="http://127.0.0.1:1",
    )
    with pytest.raises(
        UsageError, match="lighthouse faults need the lighthouse this launcher runs"
    ):
        validate_plan(plan)
