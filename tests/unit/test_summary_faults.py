"""summary.json says which planned faults never fired, and why."""

import json

from phalanx.observe.summary import build_summary


def test_a_fault_that_never_found_a_step_is_listed_as_not_applied(tmp_path):
    events = [
        {"t": 1.0, "kind": "run_start", "source": "launcher", "replicas": {"r0": {}, "r1": {}},
         "faults": [
             {"kind": "sdc", "replica": 1, "step": 5, "phase": "compute", "target": "grad"},
             {"kind": "nan", "replica": 0, "step": 7, "phase": "compute"},
             {"kind": "lighthouse", "replica": -1, "step": 3, "phase": "start"},
         ]},
        # Deferred: planned at 5, fired at 6 (r1 held no samples at 5).
        {"t": 2.0, "kind": "fault", "source": "r1", "replica": "r1", "fault": "sdc",
         "step": 6, "planned_step": 5, "phase": "compute", "target": "grad"},
    ]  # fmt: skip
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    faults = build_summary(tmp_path)["faults"]
    assert [f["kind"] for f in faults["injected"]] == ["sdc"]
    assert [(f["kind"], f["replica"], f["step"]) for f in faults["not_applied"]] == [("nan", 0, 7)]
    assert "no samples" in faults["not_applied"][0]["reason"]
