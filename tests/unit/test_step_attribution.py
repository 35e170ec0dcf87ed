"""Who is to blame for a vetoed slice, and what the blamed replica does next (runtime/step.py)."""

from __future__ import annotations

import math
import types

import torch

from phalanx.runtime.control import AGREES, DIFFERS, NOT_CHECKED, Control, ControlLayout
from phalanx.runtime.step import RoundResult, Vetoed, _attribute, _blame_diverged, sound

MEMBERS = ["r0", "r1", "r2"]


def _judged(rerun: int, peer: int) -> RoundResult:
    layout = ControlLayout(len(MEMBERS), 0, 0)
    control = Control(torch.zeros(layout.numel, dtype=torch.float64), layout)
    control.put("rerun", 0, rerun)
    control.put("peer_verdict", 0, peer)
    result = RoundResult(ok=True, global_norm=1.0)
    _attribute(control, MEMBERS, [Vetoed("r0", 0, 16, math.inf, "non-finite gradient")], 5, result)
    return result


def _votes(result: RoundResult, name: str) -> tuple[bool, str]:
    return sound(types.SimpleNamespace(name=name), result)


def test_a_wrong_gradient_its_own_rerun_reproduces_while_a_peer_differs_is_healed() -> None:
    """A flipped weight gives the same wrong gradient on every rerun: the replica's state
    is suspect, so it does not commit (the next quorum heals it from a peer) and nobody
    can heal from its corrupt state meanwhile."""
    result = _judged(rerun=AGREES, peer=DIFFERS)
    assert result.at_fault == {"r0": "a peer recomputed the slice and disagreed"}
    assert result.reproducibly_wrong == {"r0"}
    ok, why = _votes(result, "r0")
    assert not ok and "healing" in why
    assert _votes(result, "r1") == (True, "")  # the others commit the step without r0


def test_a_transient_fault_or_the_data_keeps_the_replica_in_step() -> None:
    transient = _judged(rerun=DIFFERS, peer=NOT_CHECKED)  # its state is fine: a one-off
    assert transient.at_fault and not transient.reproducibly_wrong
    assert _votes(transient, "r0") == (True, "")
    data = _judged(rerun=AGREES, peer=AGREES)  # the slice itself is extreme
    assert not data.at_fault and not data.reproducibly_wrong
    assert _votes(data, "r0") == (True, "")


def test_a_fingerprint_tie_is_left_to_the_vetoes_only_when_some_gradients_overflowed() -> None:
    from phalanx.runtime.step import _tie_left_to_vetoes

    def control_with(vetoes: list[tuple[float, float]]) -> Control:
        layout = ControlLayout(len(vetoes), 0, 0)
        control = Control(torch.zeros(layout.numel, dtype=torch.float64), layout)
        for slot, (veto, norm) in enumerate(vetoes):
            control.put("veto", slot, veto)
            control.put("slice_norm", slot, norm)
        return control

    assert _tie_left_to_vetoes(control_with([(1, math.inf), (0, 0)]))
    assert _tie_left_to_vetoes(control_with([(1, math.nan), (0, 0)]))
    assert not _tie_left_to_vetoes(control_with([(1, 50.0), (0, 0)]))  # finite
    assert not _tie_left_to_vetoes(control_with([(0, 0), (0, 0)]))  # no veto
    assert not _tie_left_to_vetoes(control_with([(1, math.inf)] * 2))  # both


def test_a_replica_healed_at_this_quorum_is_no_witness_and_not_at_fault() -> None:
    """Chaos schedule 145, third rerun: r2 healed from r0 just as r0's weight flipped, so two
    replicas held the corrupt state and outvoted the healthy r1."""
    from phalanx.guard.kinds import check_replicas

    bad, good = (1.0, 2.0), (1.0, 3.0)
    prints = {"r0": bad, "r1": good, "r2": bad}
    kinds = dict.fromkeys(prints, "cpu")
    assert set(check_replicas(prints, {}, kinds, 4).diverged) == {"r1"}  # copies voting
    copied = check_replicas(prints, {}, kinds, 4, frozenset({"r2"}))
    assert copied.tie and not copied.diverged  # two independent witnesses disagree
    # A copy that differs from an agreed majority still diverges (its heal went wrong).
    assert set(check_replicas({**prints, "r1": bad, "r2": good}, {}, kinds, 4,
                              frozenset({"r2"})).diverged) == {"r2"}  # fmt: skip

    layout = ControlLayout(len(MEMBERS), 0, 0)
    control = Control(torch.zeros(layout.numel, dtype=torch.float64), layout)
    control.put("rerun", 2, AGREES)
    control.put("peer_verdict", 2, DIFFERS)
    control.put("healed", 2, 1.0)
    result = RoundResult(ok=True, global_norm=1.0, tie_to_vetoes=True)
    _attribute(control, MEMBERS, [Vetoed("r2", 0, 16, math.inf)], 4, result)
    assert result.detections[0]["attribution"] == "heal_source"
    assert not result.at_fault  # no offence: its chip did nothing wrong
    assert not _votes(result, "r2")[0]  # but it heals again, from a replica that committed
    # A fingerprint majority vouched for the healed state: the wrong gradient is its chip's
    # (a defective chip that healed after an earlier offence, test_sdc_guard, seed 11).
    vouched = RoundResult(ok=True, global_norm=1.0)
    _attribute(control, MEMBERS, [Vetoed("r2", 0, 16, math.inf)], 4, vouched)
    assert vouched.detections[0]["attribution"] == "chip" and "r2" in vouched.at_fault


def test_every_observer_reads_the_same_kinds_from_the_control_block() -> None:
    """Chaos schedule 48, third rerun: on many hosts each host knew only its own replica's
    kind, so observers grouped the same fingerprints differently and two histories of
    one step were committed. Kinds now ride in the control block, declared by each."""
    from phalanx.runtime.control import kind_code

    assert kind_code("emulated") == kind_code("emulated") != kind_code("b")
    assert 1 <= kind_code("") <= 32768 and float(int(kind_code("cuda"))) == kind_code("cuda")


def test_a_copy_of_a_wrong_heal_source_is_not_at_fault() -> None:
    """Chaos schedule 107: a weight flipped on r0 at step 21, r1 healed from r0 in the next
    quorum of that step, and r0 and r1 both left the majority of r2 and r3. r1 was blamed
    (an offence) for the state it had received."""
    from phalanx.guard.kinds import check_replicas

    bad, good = (1.0, 2.0), (1.0, 3.0)
    prints = {"r0": bad, "r1": bad, "r2": good, "r3": good}
    kinds = dict.fromkeys(prints, "cpu")
    copies = frozenset({"r1"})
    check = check_replicas(prints, {}, kinds, 21, copies)
    assert set(check.diverged) == {"r0", "r1"} and not check.tie
    result = RoundResult()
    _blame_diverged(check.diverged, copies, result)
    attributions = {d["replica"]: d["attribution"] for d in result.detections}
    assert attributions == {"r0": "chip", "r1": "heal_source"}
    assert set(result.at_fault) == {"r0"}  # r1's chip did nothing wrong
