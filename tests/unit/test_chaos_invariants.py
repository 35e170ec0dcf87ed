"""Invariant 5 of the chaos campaign: no detection without a cause (hand-written events)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from phalanx.chaos.invariants import check_run, detections, unexplained_detections
from phalanx.chaos.report import markdown


def fault(replica: str, step: int, kind: str = "sdc", target: str | None = None) -> dict[str, Any]:
    """A `fault` event as a worker's injector writes it (its source is the worker)."""
    event = {"kind": "fault", "source": replica, "replica": replica, "step": step, "fault": kind}
    if target is not None:
        event["target"] = target
    return event


def veto(replica: str, step: int, **extra: Any) -> dict[str, Any]:
    """A replica's own gradient check vetoed its contribution."""
    return {"kind": "sdc", "observer": replica, "step": step, "check": "gradient_veto",
            "replica": replica, "reason": "norm", "local_rerun": "ok", **extra}  # fmt: skip


def mismatch(replica: str, step: int, observer: str = "r0", **extra: Any) -> dict[str, Any]:
    return {"kind": "sdc", "observer": observer, "step": step, "check": "fingerprint_mismatch",
            "replica": replica, **extra}  # fmt: skip


def heal(replica: str, step: int) -> dict[str, Any]:
    return {"kind": "heal", "replica": replica, "from_step": step - 1, "step": step}


def test_a_gradient_fault_explains_a_detection_at_its_step_only():
    events = [fault("r1", 6, target="grad"), veto("r1", 6), fault("r2", 9, "nan"), veto("r2", 9)]
    assert unexplained_detections(events) == ([], [])
    # The same replica a step later, or another replica at the fault's step: no cause.
    later = [fault("r1", 6, target="grad"), veto("r1", 7), veto("r2", 6)]
    assert unexplained_detections(later)[0] == [
        "gradient_veto on r1 at step 7",
        "gradient_veto on r2 at step 6",
    ]


def test_a_deferred_gradient_fault_counts_where_it_fired_not_where_it_was_planned():
    # Planned for step 5, when r1 had no samples; the injector fired it at step 7.
    events = [fault("r1", 7, target="grad"), veto("r1", 7)]
    assert unexplained_detections(events)[0] == []
    early = [veto("r1", 5), fault("r1", 7, target="grad")]
    assert unexplained_detections(early)[0] == ["gradient_veto on r1 at step 5"]


def test_a_sdc_fault_without_target_is_a_gradient_flip():
    assert unexplained_detections([fault("r1", 3), veto("r1", 3)])[0] == []


def test_a_weight_flip_explains_detections_until_the_replica_heals():
    flip = fault("r2", 12, target="weight")
    assert unexplained_detections([flip, mismatch("r2", 12), veto("r2", 13)])[0] == []
    healed = [flip, mismatch("r2", 12), heal("r2", 13), mismatch("r2", 15)]
    assert unexplained_detections(healed)[0] == ["fingerprint_mismatch on r2 at step 15"]
    # A flip explains nothing that was detected before it fired.
    before = [mismatch("r2", 11), flip]
    assert unexplained_detections(before)[0] == ["fingerprint_mismatch on r2 at step 11"]


def test_a_heal_written_before_a_slow_observers_event_of_the_same_step_is_no_repair():
    # r2 healed (to step 13) before r3 wrote its event of step 12: still the flip's detection.
    events = [
        fault("r2", 12, target="weight"),
        heal("r2", 13),
        mismatch("r2", 12, observer="r3"),
    ]
    assert unexplained_detections(events)[0] == []


def test_observers_of_one_detection_fold_into_one():
    events = [fault("r2", 4, target="weight")]
    events += [mismatch("r2", 4, observer=o) for o in ("r0", "r1", "r2", "r3")]
    assert len(detections(events)) == 1
    blamed = [mismatch("r1", 8, observer=o) for o in ("r0", "r2")]
    assert unexplained_detections(blamed)[0] == ["fingerprint_mismatch on r1 at step 8"]


def test_a_tie_restore_or_a_restart_repairs_a_weight_flip():
    flip = fault("r1", 5, target="weight")
    tie = {"kind": "sdc", "observer": "r1", "step": 5, "check": "fingerprint_tie",
           "replicas": ["r2", "r1"]}  # fmt: skip
    restore = {"kind": "tie_restore", "replica": "r1", "step": 5, "restored_step": 0}
    restart = {"kind": "worker_start", "replica": "r1", "restarted": True, "step": 0}
    assert unexplained_detections([flip, tie])[0] == []  # one holder of the tie has a cause
    for repair in (restore, restart):
        events = [flip, tie, repair, mismatch("r1", 3)]
        assert unexplained_detections(events)[0] == ["fingerprint_mismatch on r1 at step 3"]
    # A tie between replicas none of which has a cause.
    assert unexplained_detections([tie])[0] == ["fingerprint_tie on r1/r2 at step 5"]


def test_a_defective_chip_is_its_own_cause():
    events = [veto("r1", 3), veto("r1", 8)]
    assert unexplained_detections(events, defective=frozenset({"r1"})) == ([], [])
    assert len(unexplained_detections(events)[0]) == 2


def test_a_detection_attributed_to_the_data_is_counted_not_blamed():
    events = [veto("r1", 3, attribution="data"), veto("r2", 4, attribution="chip"), veto("r3", 5)]
    unexplained, by_data = unexplained_detections(events)
    assert by_data == ["gradient_veto on r1 at step 3"]
    # "chip" without a cause is blamed; so is an event without the field (older runs).
    assert unexplained == ["gradient_veto on r2 at step 4", "gradient_veto on r3 at step 5"]
    # One observer saying "chip" makes the detection a chip's.
    mixed = [veto("r1", 3, attribution="data"), mismatch("r1", 3, attribution="chip")]
    mixed[1]["check"] = "gradient_veto"
    assert unexplained_detections(mixed) == (["gradient_veto on r1 at step 3"], [])


def test_hosts_runs_name_the_faulted_worker_by_its_source():
    # On a host, the injector writes the fault's index (r0) and the worker's name as source.
    hosted = {**fault("r0", 6, target="grad"), "source": "h1-r0"}
    assert unexplained_detections([hosted, veto("h1-r0", 6)])[0] == []
    assert unexplained_detections([hosted, veto("h0-r0", 6)])[0] == [
        "gradient_veto on h0-r0 at step 6"
    ]


def _run_dir(path: Path, events: list[dict[str, Any]]) -> Path:
    """A one-step run directory with what the checker reads."""
    path.mkdir(parents=True)
    start = {"t": 0.0, "kind": "worker_start", "replica": "r0", "num_samples": 8, "seed": 0}
    step = {"t": 1.0, "kind": "step", "replica": "r0", "step": 0, "loss": 0.5,
            "participants": ["r0", "r1"], "ranges": [[0, 2], [2, 4]]}  # fmt: skip
    lines = [start, *events, step]
    (path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    (path / "summary.json").write_text(json.dumps({"completed": True, "data": {}}))
    save_file({"w": torch.zeros(2, dtype=torch.float64)}, str(path / "model.safetensors"))
    return path


def test_check_run_makes_an_unexplained_detection_a_violation(tmp_path):
    reference = _run_dir(tmp_path / "reference", [])
    clean = check_run(_run_dir(tmp_path / "ok", [veto("r1", 0, attribution="data")]),
                      0, reference, 1, 4, 2.0)  # fmt: skip
    assert clean.violations == [] and clean.data_outliers == ["gradient_veto on r1 at step 0"]
    blamed = check_run(_run_dir(tmp_path / "bad", [veto("r1", 0)]), 0, reference, 1, 4, 2.0)
    assert blamed.false_blames == ["gradient_veto on r1 at step 0"]
    assert blamed.violations == [
        "1 detection(s) blame a replica without an injected cause: gradient_veto on r1 at step 0"
    ]
    # ... and the campaign's table lists it with its repro, beside the data's outliers.
    records = [
        {"index": 0, "planned": {}, "fired": {}, "survived": {}, "completed": True,
         "exact": True, "data": {"duplicates": 0, "missing": 0, "rollbacks": 0},
         "quarantined": [], "false_blames": blamed.false_blames, "data_outliers": [],
         "violations": blamed.violations, "repro": "phalanx run ...", "wall_s": 1.0},
        {"index": 1, "planned": {}, "fired": {}, "survived": {}, "completed": True,
         "exact": True, "data": {"duplicates": 0, "missing": 0, "rollbacks": 0},
         "quarantined": [], "false_blames": [], "violations": [], "wall_s": 1.0},
    ]  # fmt: skip
    campaign = {"command": "test", "seed": 1, "workload": {"steps": 1, "timeout_s": 2.0}}
    table = markdown(campaign, records)
    assert (
        "| detections blaming a replica without an injected cause (corruption or defect) | 1 |"
        in table
    )
    assert "| gradient outliers attributed to the data" in table and "no offence) | 0 |" in table
    assert "- schedule 0: 1 detection(s) blame a replica" in table
    assert "`phalanx run ...`" in table
