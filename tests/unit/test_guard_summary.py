"""summary.json's guard part: one record per detection, with its evidence and verdict."""

from phalanx.observe.guard_summary import guard_summary


def test_each_detection_once_with_its_attribution() -> None:
    veto = {"kind": "sdc", "step": 4, "check": "gradient_veto", "replica": "r2",
            "rerun": "same", "peer": "different", "attribution": "heal_source"}  # fmt: skip
    events = [
        {**veto, "observer": "r0"},
        {**veto, "observer": "r2", "reason": "non-finite gradient"},
        {"kind": "sdc", "step": 4, "check": "fingerprint_tie", "replicas": ["r1", "r0"]},
        {"kind": "quarantine", "replica": "r3", "step": 9, "offences": 3},
    ]
    summary = guard_summary(events)
    by_check = {d["check"]: d for d in summary["detections"]}
    veto_record, tie_record = by_check["gradient_veto"], by_check["fingerprint_tie"]
    assert veto_record["attribution"] == "heal_source" and veto_record["reason"]
    assert "no offence" in veto_record["verdict"]
    assert tie_record["replicas"] == ["r1", "r0"] and "no majority" in tie_record["verdict"]
    assert len(summary["detections"]) == 2
    assert summary["quarantined"] == [{"replica": "r3", "step": 9, "offences": 3}]


def test_a_missed_outer_round_is_no_offence_in_the_summary() -> None:
    behind = {"kind": "sdc", "step": 63, "check": "outer_round_behind", "replicas": ["r0"],
              "attribution": "outer_round"}  # fmt: skip
    summary = guard_summary([{**behind, "observer": "r0"}, {**behind, "observer": "r1"}])
    (record,) = summary["detections"]
    assert "no offence" in record["verdict"] and "outer round" in record["verdict"]
