import pytest

from phalanx.emulate.spec import parse_emulate
from phalanx.errors import UsageError
from phalanx.faults.spec import FaultSpec, parse_fault


def test_emulate_forms():
    assert parse_emulate("1,0.5,0.25x2") == [1.0, 0.5, 0.25, 0.25]
    assert parse_emulate("2x3") == [2.0, 2.0, 2.0]


@pytest.mark.parametrize("spec", ["", "fast", "1,,2", "0", "-1", "1x0", "1xa", "1e9"])
def test_emulate_nonsense_names_the_flag(spec):
    with pytest.raises(UsageError) as err:
        parse_emulate(spec)
    assert err.value.field == "--emulate"
    assert "Fix:" in err.value.message()


def test_fault_roundtrip():
    fault = parse_fault("kill:replica=1,step=20,restart_s=2,phase=allreduce", 4)
    assert fault == FaultSpec("kill", 1, 20, "allreduce", {"restart_s": 2.0})
    assert FaultSpec.from_json(fault.to_json()) == fault
    assert parse_fault("hang:replica=2,step=30,seconds=8").params == {"seconds": 8.0}
    assert parse_fault("slow:replica=0,step=40,speed=0.3").params == {"speed": 0.3}


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("explode:replica=1,step=2", "unknown fault kind"),
        ("kill:replica=1", "missing step"),
        ("kill:replica=1,step=2,restrat_s=3", "unknown key 'restrat_s'"),
        ("kill:replica=x,step=2", "integer"),
        ("hang:replica=1,step=2", "missing seconds"),
        ("kill:replica=9,step=2", "only 4 replicas"),
        ("kill:replica=1,step=2,phase=lunch", "unknown phase"),
        ("kill", "has no keys"),
        ("slow:replica=0,step=1,speed=0", "must be > 0"),
    ],
)
def test_fault_typos_get_one_clear_message(spec, needle):
    with pytest.raises(UsageError) as err:
        parse_fault(spec, 4)
    assert needle in err.value.message()
